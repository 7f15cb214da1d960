"""Before a run is started: does the Prefect server answer, and is a process serving the deployment?

    python -m flows.check server            # exit 1 with one line when no server answers at PREFECT_API_URL
    python -m flows.check full|reevaluate   # ... or when elm/<name> is not registered, paused, or not polled

Without these checks ``prefect deployment run elm/full --watch`` waits forever on a run nobody picks up
(it goes Late). A deployment is served while a process polls the server for its runs: ``make deploy``
(``serve``) or a worker of its work pool (``make worker``); each poll stamps the deployment's
``last_polled``, every 10 s by default. Plain HTTP against the API (httpx), so the answer comes in
well under a second; importing prefect would take longer than the check.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys

import httpx

DEFAULT_API = "http://127.0.0.1:4200/api"
POLLED_WITHIN_S = 90
"""A deployment not polled for this long has no process serving it (Prefect's own mark is 60 s)."""


def api_url() -> str:
    return os.environ.get("PREFECT_API_URL") or DEFAULT_API


def server_problem(api: str) -> str | None:
    """None when the server answers, else the one line that says what to start."""
    try:
        httpx.get(f"{api}/health", timeout=3).raise_for_status()
        return None
    except httpx.HTTPError as e:
        return (f"no Prefect server answers at {api} ({type(e).__name__}): start one with `make server` "
                f"(on another port: `make server PREFECT_PORT=4300` and PREFECT_API_URL=http://127.0.0.1:4300/api)")


def deployment_problem(api: str, name: str, now: _dt.datetime | None = None) -> str | None:
    """None when elm/<name> is registered, not paused and polled lately; else the one line that says why not."""
    if problem := server_problem(api):
        return problem
    r = httpx.get(f"{api}/deployments/name/elm/{name}", timeout=5)
    if r.status_code == 404:
        return f"elm/{name} is not registered on {api}: start `make deploy` (serves it) and keep it running"
    r.raise_for_status()
    d = r.json()
    serve_hint = (f"start `make worker` (work pool {d['work_pool_name']!r})" if d.get("work_pool_name")
                  else "start `make deploy` and keep it running")
    if pool := d.get("work_pool_name"):  # a work pool's deployment: is one of its workers online?
        workers = httpx.post(f"{api}/work_pools/{pool}/workers/filter", json={}, timeout=5)
        if not any(w.get("status") == "ONLINE" for w in (workers.json() if workers.is_success else [])):
            return f"no worker of work pool {pool!r} is online to run elm/{name}: {serve_hint}"
        return None
    if d.get("paused"):
        return f"elm/{name} is paused: the process that served it has stopped; {serve_hint}"
    polled = d.get("last_polled")
    now = now or _dt.datetime.now(_dt.timezone.utc)
    if polled is None:
        return f"no process has ever polled for elm/{name} runs: {serve_hint}"
    age = (now - _dt.datetime.fromisoformat(polled.replace("Z", "+00:00"))).total_seconds()
    if age > POLLED_WITHIN_S:
        return f"no process has polled for elm/{name} runs for {age:.0f} s: {serve_hint}"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m flows.check server|full|reevaluate", file=sys.stderr)
        return 2
    what = argv[0]
    problem = server_problem(api_url()) if what == "server" else deployment_problem(api_url(), what)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
