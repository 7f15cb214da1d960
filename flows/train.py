from __future__ import annotations

from prefect import flow

from elm.train.config import TrainConfig
from tasks.train import train_task


@flow(name="train", log_prints=True)
def train_flow(synthesize_version: str, training: TrainConfig = TrainConfig(),
               artifacts_dir: str | None = None) -> str:
    """Two-stage ELM training (adapter, then the whole model) on a synthesize artifact's training split, with
    the embeddings that artifact was made from."""
    return train_task(synthesize_version, training, artifacts_dir)
