"""What every task shares: store construction, retry policy, and publishing summaries to the Prefect UI."""

from __future__ import annotations


from elm.artifacts import Artifact, ArtifactStore, open_store


def store(artifacts_dir: str | None) -> ArtifactStore:
    return open_store(artifacts_dir)


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
        description=f"{art.stage} {art.version}: rows per file{' (cache hit)' if cache_hit else ''}, at {art.path}",
    )


def rounded(rows: list[dict], digits: int = 3) -> list[dict]:
    """Table rows for reading on a screen: floats to ``digits`` digits, NaN and infinities as None."""
    import math

    def r(v):
        if isinstance(v, float) or type(v).__name__.startswith("float"):
            v = float(v)
            return round(v, digits) if math.isfinite(v) else None
        return v

    return [{k: r(v) for k, v in row.items()} for row in rows]


def worker_name() -> str:
    """The Dask worker running this (its name), or this process."""
    import os

    try:
        from distributed import get_worker

        return f"dask worker {get_worker().name} (pid {os.getpid()})"
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def runner_mapper(task_fn, task_runner: str = "threads", workers: int = 1, dask_address: str | None = None):
    """A stage's fan-out hook (elm.workparts.Mapper: evaluation parts, synthesis chunks): maps ``task_fn`` over
    the work items on the task runner these name (tasks.runners); None, i.e. "run them in the stage's
    own loop", for one thread. The runner is built now, so a bad config fails before any work, and started
    only when there is work to map."""
    if task_runner == "threads" and workers == 1 and not dask_address:
        return None
    from prefect import get_run_logger, unmapped

    from tasks.runners import make_task_runner

    runner = make_task_runner(task_runner, workers, dask_address)

    def map_items(items: list, versions: dict[str, str], cfg, store_root: str, folder: str) -> None:
        with runner:
            futures = runner.map(task_fn, {"item": items, "versions": unmapped(versions), "cfg": unmapped(cfg),
                                           "store_root": unmapped(store_root), "folder": unmapped(folder)})
            futures.wait()  # every item finishes (and is kept for a resume) before a failure is raised
            if failed := [n for n, f in zip(items, futures) if not f.state.is_completed()]:
                get_run_logger().error("%s: %d of %d items failed: %s", task_fn.name, len(failed), len(items), failed)
            futures.result()  # raises the first failure

    return map_items
