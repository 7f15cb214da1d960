"""Deployments ``elm/full`` and ``elm/reevaluate``, served by this process: ``make deploy``.

    make server                                   # terminal 1: Prefect server + UI at http://127.0.0.1:4200
    make deploy                                   # terminal 2: registers both deployments and serves them
    PREFECT_API_URL=http://127.0.0.1:4200/api .venv/bin/prefect deployment run elm/full --watch

Both deployments run the ``elm`` flow (flows/pipeline.py): ``full`` the whole chain, ``reevaluate``
evaluation and report of the latest trained model on a cron schedule (``--cron``, default nightly at
03:00; ``--no-schedule`` to register it unscheduled). ``--config`` gives the flow parameters of both as
JSON (dataset, budgets, models: the fields of the configs in elm/), validated when a run starts. This
process is the worker: it polls the server and runs each flow run in a subprocess; stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

DEFAULT_CRON = "0 3 * * *"
FULL, REEVALUATE = "full", "reevaluate"


def load_parameters(path: str | None) -> dict:
    """Flow parameters from a JSON file ({} without one); checked against the flow's signature now, so a
    typo fails here rather than at 03:00."""
    if not path:
        return {}
    try:
        params = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"--config {path}: {e}") from None
    if not isinstance(params, dict):
        raise SystemExit(f"--config {path}: expected a JSON object of flow parameters, got {type(params).__name__}")
    from flows.pipeline import elm_flow

    if "mode" in params:
        raise SystemExit(f"--config {path}: 'mode' is set by the deployment (full or reevaluate), not the config")
    elm_flow.validate_parameters(params)  # prefect's ParameterTypeError names the field and the problem
    return params


def deployments(params: dict, cron: str | None = DEFAULT_CRON) -> list:
    from flows.pipeline import elm_flow

    full = elm_flow.to_deployment(name=FULL, parameters={**params, "mode": FULL},
                                  description="The whole chain: ingest, embeddings, synthesize, train, evaluate, "
                                              "report (each stage a cache hit when its version exists).",
                                  tags=["elm"])
    reevaluate = elm_flow.to_deployment(name=REEVALUATE, parameters={**params, "mode": REEVALUATE}, cron=cron,
                                        description="Evaluation and report of the latest trained model.",
                                        tags=["elm", "scheduled"])
    return [full, reevaluate]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m flows.deploy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=os.environ.get("ELM_FLOW_CONFIG"),
                   help="JSON file of elm flow parameters for both deployments [env ELM_FLOW_CONFIG]")
    p.add_argument("--cron", default=os.environ.get("ELM_REEVALUATE_CRON", DEFAULT_CRON),
                   help=f"schedule of elm/reevaluate [env ELM_REEVALUATE_CRON, default '{DEFAULT_CRON}']")
    p.add_argument("--no-schedule", action="store_true", help="register elm/reevaluate without a schedule")
    a = p.parse_args(argv)
    if not os.environ.get("PREFECT_API_URL"):
        raise SystemExit("PREFECT_API_URL is not set: start a server (make server) and export "
                         "PREFECT_API_URL=http://127.0.0.1:4200/api, or use make deploy")
    params = load_parameters(a.config)
    from prefect import serve

    print(f"serving elm/{FULL} and elm/{REEVALUATE} (cron {None if a.no_schedule else a.cron!r}) "
          f"against {os.environ['PREFECT_API_URL']}")
    serve(*deployments(params, None if a.no_schedule else a.cron))


if __name__ == "__main__":  # `python -m flows.deploy` imports flows/__init__ (offline settings) first
    main()
