"""Where fanned-out tasks run, as a config value: threads in this process, or Dask (a local cluster or one
already running, e.g. on Kubernetes or a batch queue). prefect_dask is imported only for "dask"."""

from __future__ import annotations

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

KINDS = ("threads", "dask")


def make_task_runner(kind: str = "threads", workers: int = 2, address: str | None = None) -> TaskRunner:
    """A fresh (not yet started) task runner: ``kind`` "threads" runs ``workers`` threads here; "dask" joins
    the scheduler at ``address``, or starts a local cluster of ``workers`` single-threaded processes (one
    model per process; several threads over one model would only contend for the same cores)."""
    if kind not in KINDS:
        raise ValueError(f"unknown task runner {kind!r}; known: {', '.join(KINDS)}")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    if kind == "threads":
        if address:
            raise ValueError(f"a Dask scheduler address ({address}) needs the 'dask' task runner, not 'threads'")
        return ThreadPoolTaskRunner(max_workers=workers)
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})
