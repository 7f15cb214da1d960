from __future__ import annotations

from prefect import flow

from elm.evaluation import EvalConfig
from tasks.evaluate import evaluate_task


@flow(name="evaluate", log_prints=True)
def evaluate_flow(versions: dict[str, str], evaluation: EvalConfig = EvalConfig(),
                  artifacts_dir: str | None = None) -> str:
    """SC/BC per task with references, the text-only baseline, interpolation and CAV moves for versions["train"]."""
    return evaluate_task(versions, evaluation, artifacts_dir)
