from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from elm.train.config import TrainConfig
from elm.train.stage import TRAIN, report, train
from tasks.common import store


@task(name="train")
def train_task(versions: dict[str, str], cfg: TrainConfig, artifacts_dir: str | None = None) -> str:
    """Runs `accelerate launch` in a subprocess (its output streams into this task's log); resumes a killed run."""
    s = store(artifacts_dir)
    arts = {k: s.resolve(k, versions[k]) for k in TRAIN.inputs}
    art, hit = train(arts, cfg, s)
    text = report(art)
    get_run_logger().info("%s\n%s", "cache hit" if hit else "trained", text)
    loss = art.summary.get("val_loss", {})
    create_table_artifact(key="train-val-loss", table=[{"when": k, "val_loss": v} for k, v in loss.items()],
                          description=f"train {art.version}: held-out validation loss before and after each stage")
    create_markdown_artifact(key="train-report", markdown="```\n" + text + "\n```", description="train")
    return art.version
