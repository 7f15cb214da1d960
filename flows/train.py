from __future__ import annotations

from prefect import flow

from elm.train.config import TrainConfig
from tasks.train import train_task


@flow(name="train", log_prints=True)
def train_flow(versions: dict[str, str], training: TrainConfig = TrainConfig(),
               artifacts_dir: str | None = None) -> str:
    """Two-stage ELM training (adapter, then the whole model) on a synthesize artifact's training split."""
    return train_task(versions, training, artifacts_dir)
