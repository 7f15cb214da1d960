from __future__ import annotations

from prefect import flow

from elm.data.ingest import IngestConfig
from tasks.ingest import ingest_task


@flow(name="ingest", log_prints=True)
def ingest_flow(
    dataset: str = "ml-latest-small",
    source: str | None = None,
    verify: bool = True,
    artifacts_dir: str | None = None,
    data_dir: str | None = None,
) -> str:
    """Ingest a MovieLens release into validated, versioned Parquet; returns the artifact version."""
    return ingest_task(IngestConfig(dataset=dataset, source=source, verify=verify), artifacts_dir, data_dir)
