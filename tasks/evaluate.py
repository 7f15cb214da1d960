from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact

from elm.evaluate.config import EvalConfig
from elm.evaluate.context import resolve_inputs
from elm.evaluate.parts import PartMapper, run_part
from elm.evaluate.stage import evaluate, report
from tasks.common import publish_rows, rounded, runner_mapper, store, worker_name


@task(name="evaluate-part", task_run_name="evaluate-part-{item}")
def evaluate_part_task(item: str, versions: dict[str, str], cfg: EvalConfig, store_root: str, folder: str) -> str:
    """One evaluation part (``item``: its name), wherever the task runner puts it; returns its file."""
    path = run_part(item, versions, cfg, store_root, folder)
    get_run_logger().info("evaluate part %s written by %s", item, worker_name())
    return path


def part_mapper(task_runner: str = "threads", workers: int = 1, dask_address: str | None = None
                ) -> PartMapper | None:
    """The evaluate stage's map_parts hook: each part an evaluate-part task on the runner these name."""
    return runner_mapper(evaluate_part_task, task_runner, workers, dask_address)


@task(name="evaluate")
def evaluate_task(train_version: str, cfg: EvalConfig, artifacts_dir: str | None = None,
                  task_runner: str = "threads", workers: int = 1, dask_address: str | None = None) -> str:
    """Scores the ELM of a train artifact on the artifacts it was made from; resumes an interrupted run.
    The parts run on the task runner that task_runner/workers/dask_address describe (tasks.runners)."""
    mapper = part_mapper(task_runner, workers, dask_address)
    s = store(artifacts_dir)
    art, hit = evaluate(resolve_inputs(s, train_version), cfg, s, map_parts=mapper)
    get_run_logger().info("%s\n%s", "cache hit" if hit else "evaluated", report(art))
    publish_rows(art, hit)
    scores = art.file("scores.parquet")
    import pandas as pd

    table = pd.read_parquet(scores)
    key_first = ["split", "task", "metric", "elm_normalised", "baseline_normalised", "elm", "baseline"]
    table = table[[c for c in key_first if c in table] + [c for c in table if c not in key_first]]
    create_table_artifact(key="evaluate-scores", table=rounded(table.to_dict("records")),
                          description=f"evaluate {art.version}: SC/BC per split and task, normalised first "
                                      "(0 = random, 1 = teacher), with the random and truth references")
    ctrl = pd.read_parquet(art.file("controls.parquet"))
    create_table_artifact(key="evaluate-controls", table=rounded(ctrl.to_dict("records")),
                          description=f"evaluate {art.version}: does the text follow the vector? held-out movies, "
                                      "value with its 95% bootstrap interval (low, high) and its shuffled control")
    return art.version
