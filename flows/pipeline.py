"""The ``elm`` flow: the whole chain on one config. ``python -m flows.pipeline --help``."""

from __future__ import annotations

import argparse
import json
import logging
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
from flows.story import Story
from flows.train import train_flow


@task(name="newest-train")
def newest_train_task(artifacts_dir: str | None = None) -> str:
    """The newest train artifact in the store (by when it was made), whatever ``latest`` points at."""
    from elm.artifacts import ArtifactError
    from tasks.common import store

    s = store(artifacts_dir)
    if not (versions := s.versions("train")):
        raise ArtifactError(f"no train artifact in {s.root}: run elm/full (make full, or make run) first")
    return versions[-1].version


def _what_is_new(story: Story, artifacts_dir: str | None, train: str) -> None:
    """Say in one line whether the re-evaluation scored anything new, and what newer inputs wait for a training."""
    from elm.data.ingest import INGEST
    from elm.embed.spaces import SPACE_STAGES
    from elm.lineage import newer_than_lineage
    from tasks.common import store

    s = store(artifacts_dir)
    evaluated = next(r for r in story.stages if r.stage == "evaluate")
    waiting = newer_than_lineage(s, s.resolve("train", train), (INGEST.name, "splits", *SPACE_STAGES))
    later = (f"; newer inputs than the model was trained on: "
             f"{', '.join(f'{k} {v}' for k, v in waiting.items())} (elm/full trains on them)") if waiting else ""
    if evaluated.built:
        story.say(f"evaluated the newest model, train {train}: evaluate {evaluated.version}{later}")
    else:
        story.say(f"nothing new to evaluate: the newest model, train {train}, was evaluated before "
                  f"(evaluate {evaluated.version}){later}")


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

    Each stage receives only the version(s) of the stage before it (the rest of its inputs is that
    artifact's lineage), so the run graph is the chain ingest -> embeddings -> synthesize -> train ->
    evaluate -> report. The run's own page carries the story: a log line per stage (started; built or
    cache hit, version, seconds, path) and the artifacts ``elm-summary`` (headline, stages, report page) and
    ``elm-stages``.

    mode "reevaluate" evaluates and reports the newest train artifact in the store (the scheduled
    ``elm/reevaluate`` deployment), and says in one line whether that scored anything new.

    task_runner / workers / dask_address: where synthesis chunks and evaluation parts run
    (tasks/runners.py): here, one after another (the default), on ``workers`` threads, on a local Dask
    cluster of ``workers`` processes, or on the Dask scheduler at ``dask_address``.
    """
    fan_out = dict(task_runner=task_runner, workers=workers, dask_address=dask_address)
    story = Story(artifacts_dir)
    if mode == "reevaluate":
        train = newest_train_task(artifacts_dir)
    else:
        ingest = story.run("ingest", ingest_flow, dataset=dataset, source=source, artifacts_dir=artifacts_dir,
                           data_dir=data_dir)
        embeddings = story.run("embeddings", embeddings_flow, ingest, splits, wals, semantic, artifacts_dir)
        synthesized = story.run("synthesize", synthesize_flow, embeddings, synthesis, artifacts_dir, **fan_out)
        train = story.run("train", train_flow, synthesized, training, artifacts_dir)
    evaluated = story.run("evaluate", evaluate_flow, train, evaluation, artifacts_dir, **fan_out)
    if mode == "reevaluate":
        _what_is_new(story, artifacts_dir, train)
    reported = story.run("report", report_flow, evaluated, artifacts_dir)
    story.publish(reported)
    from elm.evaluate.config import EVALUATE
    from elm.lineage import resolve_lineage
    from tasks.common import store

    s = store(artifacts_dir)
    lineage = resolve_lineage(s.resolve("evaluate", evaluated), EVALUATE.inputs, store=s)
    return {**{k: a.version for k, a in lineage.items()}, "report": reported}


def server_or_temporary():
    """The configured Prefect server (the `elm` profile of `make server`) when it answers, so the run shows in
    its UI; otherwise, saying so in one line, a temporary server for this run (``make run`` needs none)."""
    from contextlib import nullcontext

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.check import server_problem

    api = PREFECT_API_URL.value()
    if not api or not server_problem(api):
        return nullcontext()
    print(f"no Prefect server answers at {api}: this run uses a temporary one (`make server` to see runs in its UI)")
    return temporary_settings(updates={PREFECT_API_URL: None})


def read_config(path: str | None) -> dict:
    """Flow parameters from a JSON file ({} without one), checked against the flow's signature before any
    stage runs or any deployment is registered (prefect's ParameterTypeError names the field and the problem;
    ``config_error_line`` says it in one line). Also the reader of flows/deploy.py's --config."""
    if not path:
        return {}
    try:
        params = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"--config {path}: {e}") from None
    if not isinstance(params, dict):
        raise SystemExit(f"--config {path}: expected a JSON object of flow parameters, got {type(params).__name__}")
    quiet = logging.getLogger("prefect.flows")
    level, quiet.level = quiet.level, logging.CRITICAL  # prefect logs the error as a dict; callers say it in one line
    try:
        elm_flow.validate_parameters(params)
    finally:
        quiet.setLevel(level)
    return params


def config_error_line(path: str, err: Exception, params: dict | None = None) -> str:
    """A ParameterTypeError as one line: the file, then each field with the value given and the problem (the
    configs' own messages name what is allowed)."""
    parts = []
    for ln in str(err).splitlines()[1:]:  # " - field.sub: message", one per invalid field
        field, _, msg = ln.strip(" -").partition(": ")
        value: object = params
        for key in field.split("."):
            value = value.get(key, "?") if isinstance(value, dict) else "?"
        shown = "" if isinstance(value, dict) else f" = {json.dumps(value, default=str)}"
        parts.append(f"{field}{shown}: {msg.removeprefix('Value error, ')}")
    return f"CONFIG {path}: " + ("; ".join(parts) or str(err))


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
    from prefect.exceptions import ParameterTypeError

    try:
        params = read_config(a.config)  # a bad file fails before any server starts
    except ParameterTypeError as e:
        raise SystemExit(config_error_line(a.config, e, json.loads(Path(a.config).read_text()))) from None
    with server_or_temporary():
        versions = elm_flow(**{**dict(dataset=a.dataset, source=a.source, artifacts_dir=a.artifacts, data_dir=a.data,
                                      synthesis=SynthesisConfig(teacher=a.teacher), task_runner=a.task_runner,
                                      workers=a.workers, dask_address=a.dask_address),
                               **params})

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
