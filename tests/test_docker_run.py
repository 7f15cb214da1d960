"""The images of docker/, for real: a container of elm-pipeline:cpu runs the pipeline into a bind-mounted store
that `elm sql` reads here; compose brings up the Prefect server and the runner of elm/full and elm/reevaluate,
the UI answers on 127.0.0.1, and a deployment run started from this machine completes.

Runs where a Docker engine answers and elm-pipeline:cpu is built (`make docker-test` starts the engine and
builds the images first); skips with one line otherwise (CI has no engine). Both runs use
configs/flows/small.json (the real models, small budgets): the full default takes ~20 minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.test_deployments import free_port
from tests.test_docker_files import compose_command

REPO = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("ELM_DOCKER_IMAGE", "elm-pipeline:cpu")
SMALL = REPO / "configs" / "flows" / "small.json"
STAGES = {"ingest", "splits", "semantic", "behavioral", "synthesize", "train", "evaluate", "report"}
ELM = str(Path(sys.executable).parent / "elm")
PREFECT = str(Path(sys.executable).parent / "prefect")
RUN_TIMEOUT = float(os.environ.get("ELM_DOCKER_RUN_TIMEOUT", 3600))  # seconds for one small pipeline run

pytestmark = pytest.mark.slow


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert out.returncode == 0, f"docker {' '.join(args)}:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out


def _engine_and_image() -> str | None:
    """Why the tests cannot run here (None when they can)."""
    if DOCKER is None:
        return "no docker CLI (apt-get install docker.io; make docker-test)"
    if subprocess.run([DOCKER, "info"], capture_output=True, timeout=30).returncode != 0:
        return "no Docker engine answers (make docker-test starts one)"
    if subprocess.run([DOCKER, "image", "inspect", IMAGE], capture_output=True, timeout=30).returncode != 0:
        return f"image {IMAGE} is not built (make docker-build)"
    return None


DOCKER = shutil.which("docker")
if (reason := _engine_and_image()) is not None:
    pytest.skip(reason, allow_module_level=True)


def image_user() -> tuple[int, int]:
    user = docker("image", "inspect", "-f", "{{.Config.User}}", IMAGE).stdout.strip()
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, f"{IMAGE} runs as {user!r}: it must name a numeric non-root user"
    return int(uid), int(gid or uid)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """An artifact store and a data folder the container's user can write (bind mounts keep host owners)."""
    root = tmp_path_factory.mktemp("docker-store")
    uid, gid = image_user()
    for sub in ("artifacts", "data"):
        (root / sub).mkdir()
        if os.getuid() == 0:
            os.chown(root / sub, uid, gid)
        elif os.getuid() != uid:
            pytest.skip(f"{IMAGE} runs as uid {uid}, you are {os.getuid()}: make docker-build ELM_UID=$(id -u)")
    return root


def stages_in(artifacts: Path) -> set[str]:
    """The stages with a version in the store, as `elm sql` on this machine reads them."""
    out = subprocess.run([ELM, "sql", "--artifacts", str(artifacts),
                          "select string_agg(distinct stage, '+' order by stage) as s from manifests"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    line = next((w for w in out.stdout.split() if "+" in w and "ingest" in w), "")
    return set(line.split("+"))


def test_the_image_is_lean_and_runs_as_its_user():
    uid, _ = image_user()
    probe = docker("run", "--rm", "--network", "none", IMAGE, "sh", "-c",
                   "id -u; for t in gcc cc g++ make; do command -v $t; done; python -c 'import elm.cli, flows.pipeline'"
                   " && prefect version >/dev/null && echo ok", check=False)
    lines = probe.stdout.split()
    assert probe.returncode == 0 and lines[-1] == "ok", probe.stdout + probe.stderr
    assert lines[0] == str(uid) and lines[1:-1] == [], f"uid and build tools found: {lines[:-1]}"


def test_a_container_runs_the_pipeline_into_a_mounted_store(store):
    t0 = time.monotonic()
    name = f"elm-test-run-{os.getpid()}"
    try:  # ~6 min on 2 idle cores; 41 min were measured on 2 cores shared with a load average of 12-18
        run = docker("run", "--rm", "--name", name, "--network", "none", "-v", f"{store / 'artifacts'}:/artifacts",
                     "-v", f"{store / 'data'}:/data", IMAGE, "python", "-m", "flows.pipeline",
                     "--config", "/app/configs/flows/small.json", timeout=RUN_TIMEOUT, check=False)
    finally:  # a timed-out CLI leaves its container running
        docker("rm", "-f", name, check=False)
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]
    print(f"docker run, the pipeline on {SMALL.relative_to(REPO)}: {time.monotonic() - t0:.0f} s")
    assert STAGES <= stages_in(store / "artifacts")
    report = next((store / "artifacts" / "report").glob("*/report.html"))
    assert report.stat().st_uid == image_user()[0]  # written by the container's user, readable here
    assert "<html" in report.read_text()[:2000].lower()


@pytest.fixture
def compose(store, tmp_path):
    """`docker compose up` of docker/compose.yaml on a free loopback port, the store above and a deployment
    config with one more training step than small.json (so the deployed run trains and evaluates anew)."""
    cmd = compose_command()
    if cmd is None:
        pytest.skip("neither the docker compose plugin nor docker-compose v2+ found (make setup installs it)")
    port = free_port()
    config = json.loads(SMALL.read_text())
    config["training"]["stage2"]["steps"] += 1
    (tmp_path / "deploy.json").write_text(json.dumps(config))
    (tmp_path / "deploy.json").chmod(0o644)
    override = tmp_path / "override.yaml"
    override.write_text(json.dumps({"services": {
        "prefect-server": {"ports": [f"127.0.0.1:{port}:4200"],
                           "environment": {"PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api"}},
        "worker": {"volumes": [f"{store / 'artifacts'}:/artifacts", f"{store / 'data'}:/data",
                               f"{tmp_path / 'deploy.json'}:/config/deploy.json:ro"],
                   "environment": {"ELM_FLOW_CONFIG": "/config/deploy.json"}}}}))
    # !override: compose merges port lists (the default 4200 would be published too)
    override.write_text(override.read_text().replace('"ports": [', '"ports": !override ['))
    project = [*cmd, "-p", f"elm-test-{os.getpid()}", "-f", str(REPO / "docker" / "compose.yaml"), "-f", str(override)]
    env = {**os.environ, "ELM_UID": str(image_user()[0]), "ELM_GID": str(image_user()[1])}
    up = subprocess.run([*project, "up", "-d", "--no-build", "--wait", "--wait-timeout", "600"], env=env,
                        capture_output=True, text=True, timeout=700)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        yield f"http://127.0.0.1:{port}", project, env
    finally:
        logs = subprocess.run([*project, "logs", "--no-color", "--tail", "60"], env=env, capture_output=True,
                              text=True, timeout=120)
        print(logs.stdout[-6000:])
        subprocess.run([*project, "down", "-v", "--timeout", "30"], env=env, capture_output=True, timeout=300)


def deployment_names(api: str) -> set[str]:
    try:
        return {d["name"] for d in httpx.post(f"{api}/deployments/filter", json={}, timeout=60).json()}
    except httpx.HTTPError:  # a busy server (the worker registering, a loaded machine): ask again
        return set()


def test_compose_serves_the_deployments_and_a_run_from_the_host_completes(compose, store):
    ui, project, env = compose
    page = httpx.get(ui, timeout=60)  # the UI, copied to PREFECT_UI_STATIC_DIRECTORY by the non-root server
    assert page.status_code == 200 and "<script" in page.text, page.text[:500]
    api = f"{ui}/api"
    t0 = time.monotonic()
    while deployment_names(api) < {"full", "reevaluate"}:
        assert time.monotonic() - t0 < 600, "the worker did not register elm/full and elm/reevaluate in 600 s"
        time.sleep(5)
    trained_before = len(list((store / "artifacts" / "train").glob("*/manifest.json")))

    t0 = time.monotonic()
    host = {**env, "PREFECT_API_URL": api}
    run = subprocess.run([PREFECT, "deployment", "run", "elm/full", "--watch", "--watch-timeout", str(int(RUN_TIMEOUT))],
                         env=host, capture_output=True, text=True, timeout=RUN_TIMEOUT + 120)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    print(f"compose: prefect deployment run elm/full: {time.monotonic() - t0:.0f} s")
    runs = httpx.post(f"{api}/flow_runs/filter", json={"flows": {"name": {"any_": ["elm"]}}}, timeout=60).json()
    assert [r["state"]["type"] for r in runs if r["parameters"].get("mode") == "full"] == ["COMPLETED"]
    assert STAGES <= stages_in(store / "artifacts")
    assert len(list((store / "artifacts" / "train").glob("*/manifest.json"))) == trained_before + 1


def test_the_gpu_image_imports_its_cuda_build_on_cpu():
    """elm-pipeline:gpu (make docker-build-gpu), where it is built: torch's CUDA build and cuDNN load, the project
    imports, the user is not root. Its CUDA kernels need a GPU and are not run here."""
    gpu = "elm-pipeline:gpu"
    if docker("image", "inspect", gpu, check=False).returncode != 0:
        pytest.skip(f"{gpu} is not built (make docker-wheels-gpu docker-build-gpu)")
    out = docker("run", "--rm", "--network", "none", gpu, "sh", "-c",
                 "id -u && python -c 'import torch, elm.cli, flows.pipeline, flows.deploy; "
                 "print(torch.version.cuda, torch.backends.cudnn.version(), torch.cuda.is_available())'",
                 timeout=600)
    uid, cuda, cudnn, available = out.stdout.split()[-4:]
    assert uid != "0" and cuda != "None" and cudnn.isdigit(), out.stdout
    print(f"{gpu}: CUDA {cuda}, cuDNN {cudnn}, a GPU visible: {available}")
