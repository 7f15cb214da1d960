from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact

from elm.evaluation import EvalConfig, evaluate, report, resolve_inputs
from tasks.common import publish_rows, store


@task(name="evaluate")
def evaluate_task(versions: dict[str, str], cfg: EvalConfig, artifacts_dir: str | None = None) -> str:
    """Scores the ELM of versions["train"] (and the artifacts it was made from); resumes an interrupted run."""
    s = store(artifacts_dir)
    pinned = {k: v for k, v in versions.items() if k in ("synthesize", "semantic", "behavioral", "ingest", "splits")}
    art, hit = evaluate(resolve_inputs(s, versions["train"], pinned), cfg, s)
    get_run_logger().info("%s\n%s", "cache hit" if hit else "evaluated", report(art))
    publish_rows(art, hit)
    scores = art.file("scores.parquet")
    import pandas as pd

    table = pd.read_parquet(scores).round(4).astype(object)
    create_table_artifact(key="evaluate-scores", table=table.where(table.notna(), None).to_dict("records"),
                          description=f"evaluate {art.version}: SC/BC per split and task with random and "
                                      "teacher (truth) references")
    return art.version
