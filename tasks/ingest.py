from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from elm.data.ingest import IngestConfig, ingest
from elm.data.sources import DownloadError
from elm.settings import data_dir as default_data_dir
from tasks.common import publish_rows, retry_on, store


@task(name="ingest", retries=3, retry_delay_seconds=[10, 60, 300], retry_condition_fn=retry_on(DownloadError))
def ingest_task(config: IngestConfig, artifacts_dir: str | None = None, data_dir: str | None = None) -> str:
    """Ingest one MovieLens release; returns the artifact version."""
    art, hit = ingest(config, store(artifacts_dir), Path(data_dir) if data_dir else default_data_dir())
    get_run_logger().info(("cache hit: " if hit else "") + art.describe())
    publish_rows(art, hit)
    return art.version
