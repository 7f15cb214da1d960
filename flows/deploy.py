"""Deployments ``elm/full`` and ``elm/reevaluate``: ``make deploy`` serves them from this process, or
``make deploy WORK_POOL=elm`` registers them on a process work pool that ``make worker`` runs.

    make server          # terminal 1: Prefect server + UI at http://127.0.0.1:4200 (and the `elm` profile)
    make deploy          # terminal 2: registers both deployments and serves them (Ctrl-C stops serving)
    make full            # terminal 3: prefect deployment run elm/full --watch, after checking it is served

Both deployments run the ``elm`` flow (flows/pipeline.py): ``full`` the whole chain, ``reevaluate``
evaluation and report of the newest trained model on a cron schedule (``--cron``, default nightly at
03:00, in ``--timezone``, default UTC; ``--no-schedule`` to register it unscheduled). ``--config`` gives
the flow parameters of both as JSON (dataset, budgets, models: the fields of the configs in elm/),
validated here, so a typo fails now rather than at 03:00.

Serving (the default): this process polls the server and runs each flow run in a subprocess; when it
stops, Prefect pauses both deployments and the schedule waits for the next ``make deploy``.
``--work-pool NAME``: the deployments go to a process work pool (created if missing) and this process
exits; ``prefect worker start --pool NAME`` (``make worker``) runs them, and the schedule keeps
producing runs while no worker is up (they start when one is).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

DEFAULT_CRON = "0 3 * * *"
DEFAULT_TIMEZONE = "UTC"
FULL, REEVALUATE = "full", "reevaluate"


def load_parameters(path: str | None) -> dict:
    """Flow parameters from a JSON file ({} without one); checked against the flow's signature now, so a
    typo fails here rather than at 03:00. ``mode`` belongs to the deployment, not the file."""
    from flows.pipeline import read_config

    params = read_config(path)
    if "mode" in params:
        raise SystemExit(f"--config {path}: 'mode' is set by the deployment (full or reevaluate), not the config")
    return params


def check_timezone(tz: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise SystemExit(f"--timezone {tz!r} is not an IANA time zone (e.g. UTC, Europe/Berlin, America/New_York)") \
            from None
    return tz


def deployments(params: dict, cron: str | None = DEFAULT_CRON, timezone: str = DEFAULT_TIMEZONE,
                work_pool: str | None = None) -> list:
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    from flows.pipeline import elm_flow

    # by module path: a worker started anywhere imports the installed flows package, no copy of the code
    where = dict(entrypoint_type=EntrypointType.MODULE_PATH, work_pool_name=work_pool) if work_pool else {}
    full = elm_flow.to_deployment(name=FULL, parameters={**params, "mode": FULL},
                                  description="The whole chain: ingest, embeddings, synthesize, train, evaluate, "
                                              "report (each stage a cache hit when its version exists).",
                                  tags=["elm"], **where)
    schedule = [Cron(cron, timezone=timezone)] if cron else None
    reevaluate = elm_flow.to_deployment(name=REEVALUATE, parameters={**params, "mode": REEVALUATE},
                                        schedules=schedule,
                                        description=f"Evaluation and report of the newest trained model"
                                                    f"{f' ({cron}, {timezone})' if cron else ''}.",
                                        # the UI's schedule card shows no time zone: a tag says it
                                        tags=["elm", "scheduled", *([f"{cron} {timezone}"] if cron else [])],
                                        **where)
    return [full, reevaluate]


def to_work_pool(deps: list, pool: str) -> None:
    """Register the deployments on a process work pool (created if missing), for `prefect worker start`."""
    from prefect import deploy
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        except ObjectAlreadyExists:
            pass
    deploy(*deps, work_pool_name=pool, build=False, push=False, print_next_steps_message=False,
           ignore_warnings=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m flows.deploy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=os.environ.get("ELM_FLOW_CONFIG"),
                   help="JSON file of elm flow parameters for both deployments [env ELM_FLOW_CONFIG]")
    p.add_argument("--cron", default=os.environ.get("ELM_REEVALUATE_CRON", DEFAULT_CRON),
                   help=f"schedule of elm/reevaluate [env ELM_REEVALUATE_CRON, default '{DEFAULT_CRON}']")
    p.add_argument("--timezone", default=os.environ.get("ELM_REEVALUATE_TIMEZONE", DEFAULT_TIMEZONE),
                   help=f"IANA time zone of --cron [env ELM_REEVALUATE_TIMEZONE, default {DEFAULT_TIMEZONE}]")
    p.add_argument("--no-schedule", action="store_true", help="register elm/reevaluate without a schedule")
    p.add_argument("--work-pool", default=os.environ.get("ELM_WORK_POOL") or None,
                   help="register on this process work pool and exit (run it: prefect worker start --pool NAME) "
                        "instead of serving from this process [env ELM_WORK_POOL]")
    a = p.parse_args(argv)
    if not os.environ.get("PREFECT_API_URL"):
        raise SystemExit("PREFECT_API_URL is not set: start a server (make server) and use make deploy, or "
                         "export PREFECT_API_URL=http://127.0.0.1:4200/api")
    from flows.check import server_problem

    if problem := server_problem(os.environ["PREFECT_API_URL"]):
        raise SystemExit(problem)
    tz = check_timezone(a.timezone)
    from prefect.exceptions import ParameterTypeError

    from flows.pipeline import config_error_line

    try:
        params = load_parameters(a.config)
    except ParameterTypeError as e:
        raise SystemExit(config_error_line(a.config, e, json.loads(Path(a.config).read_text()))) from None
    cron = None if a.no_schedule else a.cron
    deps = deployments(params, cron, tz, a.work_pool)
    where = f"work pool {a.work_pool!r}" if a.work_pool else "this process"
    print(f"elm/{FULL} and elm/{REEVALUATE} (cron {cron!r}, {tz}) on {os.environ['PREFECT_API_URL']}, run by {where}")
    if a.work_pool:
        to_work_pool(deps, a.work_pool)
        print(f"registered; start a worker: prefect worker start --pool {a.work_pool}  (or make worker)")
        return
    from prefect import serve

    serve(*deps)


if __name__ == "__main__":  # `python -m flows.deploy` imports flows/__init__ (offline settings) first
    main()
