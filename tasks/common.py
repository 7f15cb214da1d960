"""What every task shares: store construction, retry policy, and publishing summaries to the Prefect UI."""

from __future__ import annotations

from pathlib import Path

from elm.artifacts import Artifact, ArtifactStore


def store(artifacts_dir: str | None) -> ArtifactStore:
    from elm.settings import artifacts_dir as default

    return ArtifactStore(Path(artifacts_dir) if artifacts_dir else default())


def retry_on(*exc_types: type[BaseException]):
    """A Prefect retry condition: retry only errors worth retrying (network), not bad data."""

    def condition(task, task_run, state) -> bool:
        try:
            state.result()
        except exc_types:
            return True
        except BaseException:  # noqa: BLE001 - anything else is final
            return False
        return False

    return condition


def publish_rows(art: Artifact, cache_hit: bool) -> None:
    """A table artifact in the Prefect UI: the version's files and row counts."""
    from prefect.artifacts import create_table_artifact

    create_table_artifact(
        key=f"{art.stage}-rows",
        table=[{"file": name, "rows": rows} for name, rows in art.rows.items()],
        description=f"{art.stage} {art.version}{' (cache hit)' if cache_hit else ''} at {art.path}",
    )
