from __future__ import annotations

from prefect import flow

from elm.evaluate.config import EvalConfig
from tasks.evaluate import evaluate_task


@flow(name="evaluate", log_prints=True)
def evaluate_flow(train_version: str, evaluation: EvalConfig = EvalConfig(), artifacts_dir: str | None = None,
                  task_runner: str = "threads", workers: int = 1, dask_address: str | None = None) -> str:
    """SC/BC per task with references, the text-only baseline, interpolation and CAV moves for the ELM of a train
    artifact, on the artifacts it was made from.

    The evaluation's parts (generalisation per split, baseline, interpolations, one per CAV attribute) run as
    "evaluate-part" tasks on the runner these parameters name (tasks.runners.make_task_runner):
    "threads" with ``workers`` threads (1: here, one after another), or "dask": a local cluster of ``workers``
    processes, or the scheduler at ``dask_address``. They are parameters, not the flow's decorator-fixed
    task runner, so a deployment or the parent flow can move evaluation onto a cluster per run."""
    return evaluate_task(train_version, evaluation, artifacts_dir, task_runner, workers, dask_address)
