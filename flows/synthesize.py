from __future__ import annotations

from prefect import flow

from elm.synth.config import SynthesisConfig
from flows.embeddings import EmbeddingVersions
from tasks.synthesize import synthesize_task


@flow(name="synthesize", log_prints=True)
def synthesize_flow(embeddings: EmbeddingVersions | dict[str, str], synthesis: SynthesisConfig = SynthesisConfig(),
                    artifacts_dir: str | None = None, task_runner: str = "threads", workers: int = 1,
                    dask_address: str | None = None) -> str:
    """Teacher-written targets for the embeddings flow's versions (splits, semantic, behavioral; the ingest
    artifact is the one the splits were made from). task_runner/workers/dask_address: where the chunks are
    generated (tasks/runners.py)."""
    return synthesize_task(dict(embeddings.items()), synthesis, artifacts_dir, task_runner, workers, dask_address)
