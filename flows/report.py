from __future__ import annotations

from prefect import flow

from tasks.report import report_task


@flow(name="report", log_prints=True)
def report_flow(evaluate_version: str, artifacts_dir: str | None = None) -> str:
    """Tables, plots and the report page of an evaluate artifact, shown in the Prefect UI as artifacts."""
    return report_task(evaluate_version, artifacts_dir)
