"""`make server` + `make deploy` + `prefect deployment run elm/full`, for real: a Prefect server on 127.0.0.1
(temporary PREFECT_HOME), the serve process of flows/deploy.py as the worker, and the CLI a user types.

The run uses the session's store (ingest and embeddings are cache hits) with tiny budgets and a tiny random LM,
so synthesize, train, evaluate and report are computed in the deployed run itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).parent / "prefect")
CRON, TIMEZONE = "15 4 * * *", "Europe/Berlin"
CHAIN = {("ingest", "embeddings"), ("embeddings", "synthesize"), ("synthesize", "train"), ("train", "evaluate"),
         ("evaluate", "report")}


def make(target: str, api: str, env: dict, timeout: float) -> subprocess.CompletedProcess:
    """`make <target>` of the Makefile a user types, on this test's venv and server (setup taken as done)."""
    return subprocess.run(["make", "-s", "-C", str(REPO), "-o", "setup", target, f"VENV={Path(sys.executable).parents[1]}",
                           f"PREFECT_API_URL={api}"], env=env, capture_output=True, text=True, timeout=timeout)


def graph_edges(api: str, flow_run_id: str) -> set[tuple[str, str]]:
    """The run graph's edges as the UI draws them (graph-v2): subflow runs by their flow's name, task runs by
    their task's name."""
    nodes = httpx.get(f"{api}/flow_runs/{flow_run_id}/graph-v2", timeout=10).json()["nodes"]

    def name(nid: str, node: dict) -> str:
        if node["kind"] == "flow-run":
            flow_id = httpx.get(f"{api}/flow_runs/{nid}", timeout=5).json()["flow_id"]
            return httpx.get(f"{api}/flows/{flow_id}", timeout=5).json()["name"]
        return node["label"].rsplit("-", 1)[0]

    label = {nid: name(nid, n) for nid, n in nodes}
    return {(label[p["id"]], label[nid]) for nid, n in nodes for p in n["parents"]}


def run_artifacts(api: str, flow_run_id: str) -> dict[str, dict]:
    arts = httpx.post(f"{api}/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}},
                      timeout=5).json()
    return {a["key"]: a for a in arts}


def run_log(api: str, flow_run_id: str) -> str:
    logs = httpx.post(f"{api}/logs/filter", json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200},
                      timeout=5).json()
    return "\n".join(r["message"] for r in logs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM the process group we started, then SIGKILL (a serve process may ignore the first)."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout if sig != signal.SIGKILL else 10)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_for(check, timeout: float, what: str, procs=()):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"{what}: process exited with {p.returncode}:\n{Path(p.args[-1]).name}")
        try:
            out = check()
            if out:
                return out
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def server(tmp_path):
    """A real Prefect server on a free port with a fresh SQLite database; yields (api_url, env)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_API_URL=f"http://127.0.0.1:{port}/api", PREFECT_RUNNER_POLL_FREQUENCY="2",
               PREFECT_LOGGING_EXTRA_LOGGERS="elm")
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port),
                             "--analytics-off"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
                            start_new_session=True)
    try:
        wait_for(lambda: httpx.get(f"{env['PREFECT_API_URL']}/health", timeout=2).status_code == 200, 120,
                 "the Prefect server", [proc])
        yield env["PREFECT_API_URL"], env
    finally:
        stop(proc)
        log.close()


@pytest.mark.slow
def test_deployment_run_elm_full_completes_and_reevaluate_has_its_schedule(server, small_embeddings, tiny_lm_dir,
                                                                           tmp_path):
    from tests.test_embeddings import FAST

    api, env = server
    store, _, _ = small_embeddings
    params = {
        "artifacts_dir": str(store.root), "data_dir": str(store.root / "data"),
        "wals": {"factors": FAST.wals.factors, "iterations": FAST.wals.iterations},
        "synthesis": {"teacher": "template", "train_movies": 5, "heldout_movies": 3, "train_users": 2,
                      "heldout_users": 2},
        "training": {"base_model": str(tiny_lm_dir), "max_length": 96, "eval_every": 0, "eval_examples": 4,
                     "checkpoint_every": 0, "stage1": {"steps": 1, "lr": 3e-3, "batch_size": 2},
                     "stage2": {"steps": 1, "lr": 1e-4, "batch_size": 2}},
        "evaluation": {"heldout_per_task": 2, "train_per_task": 0, "tasks": ["summary", "user_profile"],
                       "max_new_tokens": 8, "movie_pairs": 1, "user_pairs": 0, "alphas": [0.0, 1.0],
                       "cav_attributes": ["genre:Comedy"], "cav_alphas": [0.0, 1.0], "cav_movies": 1,
                       "cav_users": 0, "baseline": False, "second_encoder": None}}
    (tmp_path / "tiny.json").write_text(json.dumps(params))
    log = open(tmp_path / "deploy.log", "w")
    deploy = subprocess.Popen([sys.executable, "-m", "flows.deploy", "--config", str(tmp_path / "tiny.json"),
                               "--cron", CRON, "--timezone", TIMEZONE], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        names = wait_for(lambda: {d["name"] for d in httpx.post(f"{api}/deployments/filter", json={},
                                                                   timeout=5).json()} >= {"full", "reevaluate"},
                         120, "the deployments to register", [deploy])
        assert names
        reeval = httpx.get(f"{api}/deployments/name/elm/reevaluate", timeout=5).json()
        assert [(s["schedule"]["cron"], s["schedule"]["timezone"]) for s in reeval["schedules"]] == [(CRON, TIMEZONE)]
        assert all(s["active"] for s in reeval["schedules"]) and reeval["parameters"]["mode"] == "reevaluate"

        t0 = time.monotonic()
        wait_for(lambda: httpx.get(f"{api}/deployments/name/elm/full", timeout=5).json()["last_polled"], 60,
                 "the serve process to poll", [deploy])
        run = make("full", api, env, timeout=540)  # checks it is served, then prefect deployment run --watch
        seconds = time.monotonic() - t0
        deploy_log = (tmp_path / "deploy.log").read_text()
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + deploy_log[-5000:]
        flow_runs = httpx.post(f"{api}/flow_runs/filter", json={"flows": {"name": {"any_": ["elm"]}}}, timeout=5).json()
        full = [r for r in flow_runs if r["parameters"].get("mode") == "full"]
        assert len(full) == 1 and full[0]["state"]["type"] == "COMPLETED", full
        # every stage's artifact exists, and the run's Prefect artifacts (tables, the report) are on the server
        versions = httpx.get(f"{api}/flow_runs/{full[0]['id']}", timeout=5).json()
        from elm.artifacts import ArtifactStore

        s = ArtifactStore(store.root)
        for stage in ("ingest", "splits", "semantic", "behavioral", "synthesize", "train", "evaluate", "report"):
            assert s.latest(stage) is not None, stage
        report = s.latest("report")
        assert (report.path / "report.html").exists()
        keys = {a["key"] for a in httpx.post(f"{api}/artifacts/filter", json={}, timeout=5).json()}
        assert {"report", "report-headline", "evaluate-scores", "train-val-loss"} <= keys
        assert versions["state"]["type"] == "COMPLETED"
        # the parent run tells the story: its own artifacts and log lines, and a graph that is the chain
        parent = run_artifacts(api, full[0]["id"])
        assert {"elm-summary", "elm-stages"} <= set(parent), set(parent)
        summary = parent["elm-summary"]["data"]
        assert "## Headline" in summary and "## Stages" in summary and "# ELM evaluation report" in summary
        stages = parent["elm-stages"]["data"]
        stages = json.loads(stages) if isinstance(stages, str) else stages
        assert [r["stage"] for r in stages] == ["ingest", "splits", "behavioral", "semantic", "synthesize", "train",
                                                "evaluate", "report"]
        assert {r["stage"]: r["result"] for r in stages}["train"] == "built"
        log_text = run_log(api, full[0]["id"])
        assert "train: started" in log_text and f"train: built, version {s.latest('train').version}" in log_text
        assert str(report.path / "report.html") in log_text
        assert graph_edges(api, full[0]["id"]) == CHAIN
        # the report's history: one row per evaluate version in the store, up to the reported one
        import pandas as pd

        history = pd.read_parquet(report.file("history.parquet"))
        made_by = {a.version for a in s.versions("evaluate")
                   if a.manifest["created_at"] <= s.latest("evaluate").manifest["created_at"]}
        assert len(history) == len(made_by) and set(history["evaluate"]) == made_by
        print(f"deployed elm/full on the tiny config: {seconds:.0f} s")
        # elm/reevaluate, run now instead of at 04:15: evaluation and report of the latest trained model
        run = subprocess.run([PREFECT, "deployment", "run", "elm/reevaluate", "--watch", "--watch-timeout", "300"],
                             env=env, cwd=tmp_path, capture_output=True, text=True, timeout=360)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert s.latest("evaluate").manifest["inputs"]["train"] == s.latest("train").version
        reeval_run = [r for r in httpx.post(f"{api}/flow_runs/filter", json={}, timeout=5).json()
                      if r["parameters"].get("mode") == "reevaluate" and r["state"]["type"] == "COMPLETED"][0]
        assert "nothing new to evaluate: the newest model" in run_log(api, reeval_run["id"])
        assert graph_edges(api, reeval_run["id"]) == {("newest-train", "evaluate"), ("evaluate", "report")}
        # the UI page of the run, rendered by headless Chromium where one is installed (not on CI machines)
        if browser := shutil.which("chromium") or shutil.which("chromium-browser"):
            png = tmp_path / "flow-run.png"
            ui = api.removesuffix("/api")
            subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,900",
                            "--virtual-time-budget=15000", f"--screenshot={png}", f"{ui}/runs/flow-run/{full[0]['id']}"],
                           capture_output=True, timeout=120)
            assert png.exists() and png.stat().st_size > 20_000  # a rendered page, not a blank one
        # nobody serves the deployments any more: make full says so in one line, at once, instead of waiting
        stop(deploy)
        t0 = time.monotonic()
        late = make("full", api, env, timeout=60)
        assert late.returncode != 0 and time.monotonic() - t0 < 15, late.stdout + late.stderr
        hint = late.stderr.strip().splitlines()
        assert "elm/full is paused" in hint[0] and "make deploy" in hint[0], late.stderr
    finally:
        stop(deploy)
        log.close()


def test_deploy_validates_the_flow_parameters_before_serving(tmp_path):
    """A typo in the deployments' config fails at `make deploy`, naming the field, not at 03:00."""
    from prefect.exceptions import ParameterTypeError

    from flows.deploy import load_parameters

    good = tmp_path / "good.json"
    good.write_text(json.dumps({"evaluation": {"heldout_per_task": 4}, "synthesis": {"teacher": "template"}}))
    assert load_parameters(str(good))["evaluation"] == {"heldout_per_task": 4}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"evaluation": {"heldout_per_task": 1}}))
    with pytest.raises(ParameterTypeError, match="heldout_per_task must be >= 2"):
        load_parameters(str(bad))
    bad.write_text(json.dumps({"evaluation": {"held_out": 4}}))
    with pytest.raises(ParameterTypeError, match="held_out"):
        load_parameters(str(bad))
    bad.write_text(json.dumps({"mode": "full"}))
    with pytest.raises(SystemExit, match="mode"):
        load_parameters(str(bad))
    bad.write_text("[1, 2]")
    with pytest.raises(SystemExit, match="JSON object"):
        load_parameters(str(bad))


def test_deploy_refuses_to_start_without_a_server_url(monkeypatch):
    from flows.deploy import main

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with pytest.raises(SystemExit, match="make server"):
        main([])


def test_a_bad_config_is_one_line_with_the_field_the_value_and_what_is_allowed(tmp_path):
    from prefect.exceptions import ParameterTypeError

    from flows.deploy import load_parameters
    from flows.pipeline import config_error_line

    bad = tmp_path / "bad.json"
    for params, want in [({"synthesis": {"teacher": "nope"}}, "must be one of ['local', 'openai', 'template'], got 'nope'"),
                         ({"workers": "x"}, 'workers = "x": Input should be a valid integer')]:
        bad.write_text(json.dumps(params))
        with pytest.raises(ParameterTypeError) as e:
            load_parameters(str(bad))
        line = config_error_line(str(bad), e.value, params)
        assert "\n" not in line and line.startswith(f"CONFIG {bad}: ") and want in line, line


def test_no_server_is_one_line_that_says_make_server():
    """Nothing listens on port 9: the check answers at once, naming what to start."""
    from flows.check import deployment_problem

    t0 = time.monotonic()
    problem = deployment_problem("http://127.0.0.1:9/api", "full")
    assert time.monotonic() - t0 < 5 and "no Prefect server answers" in problem and "make server" in problem
