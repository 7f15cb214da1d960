"""Loading for the Describer: which saved ELM a name means, the ELM itself, raw vector files, movie titles."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from elm import vectors as vec
from elm.artifacts import ArtifactError, ArtifactStore, checked_path
from elm.model.elm import ADAPTERS_FILE, CONFIG_FILE, ELM, ELMLoadError
from elm.serve.errors import DescribeError
from elm.train.loop import ELM_DIR
from elm.train.stage import TRAIN

TRAIN_STAGE = TRAIN.name
TRAIN_ELM_DIR = ELM_DIR
"""Where a train artifact keeps its final ELM (``stage1/`` holds the adapters-only one)."""


def resolve_elm_folder(model: str | os.PathLike | None, store: ArtifactStore) -> Path:
    """The saved ELM folder meant by ``model``: a folder (an ELM, or a train artifact holding elm/),
    "train=VERSION" or a bare train version (prefix), or None for the latest train artifact."""
    if model is None or (isinstance(model, str) and model.startswith(f"{TRAIN_STAGE}=")):
        version = None if model is None else model.split("=", 1)[1]
        try:
            art = store.resolve(TRAIN_STAGE, version)
        except ArtifactError as e:
            raise ELMLoadError(f"{e} (or pass the folder of a saved ELM)") from None
        return art.path / TRAIN_ELM_DIR
    path = Path(model)
    if path.exists():
        if not (path / CONFIG_FILE).exists() and (path / TRAIN_ELM_DIR / CONFIG_FILE).exists():
            return path / TRAIN_ELM_DIR  # the train artifact's own folder
        return path
    name = str(model)
    if os.sep not in name and not name.startswith("."):  # not a path: maybe a train version
        art = store.get(TRAIN_STAGE, name) or next(
            (a for a in store.versions(TRAIN_STAGE) if a.version.startswith(name)), None)
        if art is not None:
            return art.path / TRAIN_ELM_DIR
        raise ELMLoadError(f"no saved ELM folder {path} and no {TRAIN_STAGE!r} artifact version matching "
                           f"{name!r} in {store.root}")
    raise ELMLoadError(f"no saved ELM at {path} (no such folder)")


def load_elm(folder: Path, store: ArtifactStore) -> ELM:
    """ELM.load with every failure as an ELMLoadError naming the folder."""
    if folder.is_dir() and not (folder / CONFIG_FILE).exists() and not (folder / ADAPTERS_FILE).exists():
        raise ELMLoadError(f"{folder} is not a saved ELM: it has no {CONFIG_FILE} or {ADAPTERS_FILE}")
    try:
        checked_path(folder)  # an ELM inside an artifact (elm/, stage1/) is checked against its manifest
        return ELM.load(folder, store)
    except ArtifactError as e:
        raise ELMLoadError(str(e)) from None
    except ELMLoadError:
        raise
    except Exception as e:  # noqa: BLE001 - torch/transformers/safetensors raise many types
        raise ELMLoadError(f"cannot load the ELM in {folder}: {type(e).__name__}: {e}") from e


def load_vector_file(path: str | os.PathLike) -> np.ndarray:
    """Raw vectors from a file, as [k, dim] float32: .npy ([k, dim] or [dim]), .json (a list of numbers or of
    lists) or a vector .parquet (elm.vectors format; the ids are ignored)."""
    path = Path(path)
    if not path.is_file():
        raise DescribeError(f"vector file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix == ".json":
            arr = np.asarray(json.loads(path.read_text()), dtype=np.float32)
        elif suffix == ".parquet":
            arr = vec.read(path).matrix
        else:
            raise DescribeError(f"vector file {path}: unknown type {suffix!r}; use .npy, .json or .parquet")
        arr = np.asarray(arr, dtype=np.float32)
    except DescribeError:
        raise
    except EOFError as e:  # numpy's word for a .npy that ends before its header or data
        raise DescribeError(f"vector file {path} is empty or truncated ({path.stat().st_size} bytes): {e}") from e
    except (OSError, ValueError, TypeError) as e:
        raise DescribeError(f"vector file {path} is unreadable or not numeric: {e}") from e
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DescribeError(f"vector file {path}: expected shape [k, dim] or [dim], got {list(arr.shape)}")
    return arr


def _movie_titles(store: ArtifactStore, ingest_version: str | None) -> dict[int, str]:
    """movieId -> title ("Toy Story (1995)") from an ingest artifact; {} when it cannot be read."""
    import pyarrow.parquet as pq

    art = store.get("ingest", ingest_version) if ingest_version else None
    if art is None or not (art.path / "movies.parquet").exists():
        return {}
    t = pq.read_table(art.file("movies.parquet"), columns=["movieId", "title"])
    return dict(zip(t.column("movieId").to_pylist(), t.column("title").to_pylist()))


__all__ = ["load_elm", "load_vector_file", "resolve_elm_folder"]
