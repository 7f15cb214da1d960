"""The ``elm`` flow: the whole chain on one config. ``python -m flows.pipeline --help``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Literal

from prefect import flow, task

from elm.embed.behavioral import WALSConfig
from elm.embed.stage import SemanticConfig, SplitConfig
from elm.evaluate.config import EvalConfig
from elm.synth.config import SynthesisConfig
from elm.synth.teachers import BACKENDS
from elm.train.config import TrainConfig
from flows.embeddings import embeddings_flow
from flows.evaluate import evaluate_flow
from flows.ingest import ingest_flow
from flows.report import report_flow
from flows.synthesize import synthesize_flow
from flows.train import train_flow


@task(name="latest-trained")
def latest_trained_task(artifacts_dir: str | None = None) -> dict[str, str]:
    """The latest train artifact and the versions it was made from (evaluation reads them)."""
    from tasks.common import store

    train = store(artifacts_dir).resolve("train")  # ArtifactError if nothing was trained yet: says so
    return {"train": train.version, **train.manifest.get("inputs", {})}


@flow(name="elm", log_prints=True)
def elm_flow(
    dataset: str = "ml-latest-small",
    source: str | None = None,
    artifacts_dir: str | None = None,
    data_dir: str | None = None,
    splits: SplitConfig = SplitConfig(),
    wals: WALSConfig = WALSConfig(),
    semantic: SemanticConfig = SemanticConfig(),
    synthesis: SynthesisConfig = SynthesisConfig(),
    training: TrainConfig = TrainConfig(),
    evaluation: EvalConfig = EvalConfig(),
    mode: Literal["full", "reevaluate"] = "full",
    task_runner: Literal["threads", "dask"] = "threads",
    workers: int = 1,
    dask_address: str | None = None,
) -> dict[str, str]:
    """Run every stage (each a cache hit when its artifact version exists); returns stage -> version.

    mode "reevaluate" skips to evaluation and report of the latest trained model in the store (the nightly
    ``elm/reevaluate`` deployment): a new train artifact, or a changed evaluation config or code, gets
    evaluated; otherwise both stages are cache hits.

    task_runner / workers / dask_address: where synthesis chunks and evaluation parts run
    (tasks/runners.py): here, one after another (the default), on ``workers`` threads, on a local Dask
    cluster of ``workers`` processes, or on the Dask scheduler at ``dask_address``.
    """
    fan_out = dict(task_runner=task_runner, workers=workers, dask_address=dask_address)
    if mode == "reevaluate":
        versions = latest_trained_task(artifacts_dir)
        versions["evaluate"] = evaluate_flow(versions, evaluation, artifacts_dir, **fan_out)
        versions["report"] = report_flow(versions, artifacts_dir)
        return versions
    versions = {"ingest": ingest_flow(dataset=dataset, source=source, artifacts_dir=artifacts_dir, data_dir=data_dir)}
    versions.update(embeddings_flow(versions["ingest"], splits, wals, semantic, artifacts_dir))
    versions["synthesize"] = synthesize_flow(versions, synthesis, artifacts_dir, **fan_out)
    versions["train"] = train_flow(versions, training, artifacts_dir)
    versions["evaluate"] = evaluate_flow(versions, evaluation, artifacts_dir, **fan_out)
    versions["report"] = report_flow(versions, artifacts_dir)
    return versions


def read_config(path: str | None) -> dict:
    """Flow parameters from a JSON file ({} without one), validated before any stage runs: a typo fails at
    once, naming the field (the same checks as flows/deploy.py's --config)."""
    if not path:
        return {}
    try:
        params = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"--config {path}: {e}") from None
    if not isinstance(params, dict):
        raise SystemExit(f"--config {path}: expected a JSON object of flow parameters, got {type(params).__name__}")
    elm_flow.validate_parameters(params)
    return params


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m flows.pipeline", description=elm_flow.__doc__)
    p.add_argument("--dataset", default="ml-latest-small", help="ml-latest-small (embedded), ml-25m or ml-100k")
    p.add_argument("--source", default=None, help="folder, zip or URL of the release (default: see `elm ingest --help`)")
    p.add_argument("--artifacts", default=None, help="artifact store folder (default ./artifacts)")
    p.add_argument("--data", default=None, help="download folder (default ./data)")
    p.add_argument("--teacher", default=SynthesisConfig.teacher,
                   choices=[name for name, b in BACKENDS.items() if not b.needs_settings],
                   help="who writes the training targets (an openai endpoint: use `elm synthesize`)")
    p.add_argument("--task-runner", default="threads", choices=["threads", "dask"],
                   help="where synthesis chunks and evaluation parts run: threads here, or Dask (a local "
                        "cluster, or --dask-address)")
    p.add_argument("--workers", type=int, default=1, help="threads or local Dask worker processes (default 1)")
    p.add_argument("--dask-address", default=None, help="join this Dask scheduler, e.g. tcp://10.0.0.5:8786")
    p.add_argument("--config", default=None,
                   help="JSON file of flow parameters, as for `make deploy CONFIG=...` (e.g. configs/flows/small.json); "
                        "the parameters it sets win over the options above")
    a = p.parse_args(argv)
    versions = elm_flow(**{**dict(dataset=a.dataset, source=a.source, artifacts_dir=a.artifacts, data_dir=a.data,
                                  synthesis=SynthesisConfig(teacher=a.teacher), task_runner=a.task_runner,
                                  workers=a.workers, dask_address=a.dask_address),
                           **read_config(a.config)})

    from elm.artifacts import open_store
    from elm.embed.stage import report
    from elm.synth.stage import report as synthesis_report
    from elm.evaluate.stage import report as evaluation_report
    from elm.report.stage import headline_text
    from elm.train.stage import report as training_report

    store = open_store(a.artifacts)
    arts = {stage: store.resolve(stage, version) for stage, version in versions.items()}
    print()
    for art in arts.values():
        print(art.describe())
    print(report(arts))
    print(synthesis_report(arts["synthesize"]))
    print(training_report(arts["train"]))
    print(evaluation_report(arts["evaluate"]))
    print()
    print(headline_text(arts["report"]))


if __name__ == "__main__":
    main()
