from __future__ import annotations

import os

from prefect import get_run_logger, task, unmapped
from prefect.artifacts import create_table_artifact

from elm.evaluation import EvalConfig, PartMapper, evaluate, report, resolve_inputs, run_part
from flows.task_runners import make_task_runner
from tasks.common import publish_rows, store


def where() -> str:
    """The Dask worker running this (its name), or this process."""
    try:
        from distributed import get_worker

        return f"dask worker {get_worker().name} (pid {os.getpid()})"
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


@task(name="evaluate-part", task_run_name="evaluate-part-{name}")
def evaluate_part_task(name: str, versions: dict[str, str], cfg: EvalConfig, store_root: str, folder: str) -> str:
    """One evaluation part, wherever the task runner puts it (a thread, a Dask worker); returns its file."""
    path = run_part(name, versions, cfg, store_root, folder)
    get_run_logger().info("evaluate part %s written by %s", name, where())
    return path


def part_mapper(task_runner: str = "threads", workers: int = 1, dask_address: str | None = None
                ) -> PartMapper | None:
    """The evaluate stage's map_parts hook for a task runner config; None (every part here, one after another,
    as `elm evaluate` does) for one thread. The runner is built now, so a bad config fails before any work,
    and started only once there are parts to run (after the CAVs are fitted)."""
    if task_runner == "threads" and workers == 1 and not dask_address:
        return None
    runner = make_task_runner(task_runner, workers, dask_address)

    def map_parts(names: list[str], versions: dict[str, str], cfg: EvalConfig, store_root: str, folder: str) -> None:
        with runner:
            futures = runner.map(evaluate_part_task, {
                "name": names, "versions": unmapped(versions), "cfg": unmapped(cfg),
                "store_root": unmapped(store_root), "folder": unmapped(folder)})
            futures.wait()  # every part finishes (and is kept for a resume) before a failure is raised
            if failed := [n for n, f in zip(names, futures) if not f.state.is_completed()]:
                get_run_logger().error("evaluate: %d of %d parts failed: %s", len(failed), len(names), failed)
            futures.result()  # raises the first failure

    return map_parts


@task(name="evaluate")
def evaluate_task(versions: dict[str, str], cfg: EvalConfig, artifacts_dir: str | None = None,
                  task_runner: str = "threads", workers: int = 1, dask_address: str | None = None) -> str:
    """Scores the ELM of versions["train"] (and the artifacts it was made from); resumes an interrupted run.
    The parts run on the task runner that task_runner/workers/dask_address describe (flows.task_runners)."""
    mapper = part_mapper(task_runner, workers, dask_address)
    s = store(artifacts_dir)
    pinned = {k: v for k, v in versions.items() if k in ("synthesize", "semantic", "behavioral", "ingest", "splits")}
    art, hit = evaluate(resolve_inputs(s, versions["train"], pinned), cfg, s, map_parts=mapper)
    get_run_logger().info("%s\n%s", "cache hit" if hit else "evaluated", report(art))
    publish_rows(art, hit)
    scores = art.file("scores.parquet")
    import pandas as pd

    table = pd.read_parquet(scores).round(4).astype(object)
    create_table_artifact(key="evaluate-scores", table=table.where(table.notna(), None).to_dict("records"),
                          description=f"evaluate {art.version}: SC/BC per split and task with random and "
                                      "teacher (truth) references")
    return art.version
