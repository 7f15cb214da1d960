from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from elm.train.config import TrainConfig
from elm.train.stage import TRAIN, report, train
from elm.lineage import resolve_lineage
from tasks.common import rounded, store


@task(name="train")
def train_task(synthesize_version: str, cfg: TrainConfig, artifacts_dir: str | None = None) -> str:
    """Trains on a synthesize artifact and the embeddings it was made from. Runs `accelerate launch` in a
    subprocess (its output streams into this task's log); resumes a killed run."""
    s = store(artifacts_dir)
    arts = resolve_lineage(s.resolve("synthesize", synthesize_version), TRAIN.inputs, store=s)
    art, hit = train(arts, cfg, s)
    text = report(art)
    get_run_logger().info("%s\n%s", "cache hit" if hit else "trained", text)
    loss = art.summary.get("val_loss", {})
    create_table_artifact(key="train-val-loss", table=rounded([{"when": k, "val_loss": v} for k, v in loss.items()]),
                          description=f"train {art.version}: held-out validation loss before and after each stage")
    create_markdown_artifact(key="train-report", markdown="```\n" + text + "\n```", description=f"train {art.version}: steps, loss and where the model is (text)")
    return art.version
