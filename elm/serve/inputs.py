"""What a caller hands ``Describer``: ids and vectors, turned into checked float32 vectors (errors name the input)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from elm.model.config import SpaceSpec
from elm.serve.errors import DescribeError


def as_id(x: Any, what: str) -> int:
    if isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)):
        return int(x)
    if isinstance(x, str) and re.fullmatch(r"\s*-?\d+\s*", x):
        return int(x)
    raise DescribeError(f"{what}: {x!r} is not an integer id")


def as_vector_list(vectors: Any, name: str) -> list[np.ndarray]:
    """[dim] / [k, dim] arrays or a list of 1-D array-likes -> list of float32 1-D arrays."""
    if vectors is None:
        return []
    if isinstance(vectors, np.ndarray) or (hasattr(vectors, "detach") and hasattr(vectors, "numpy")):
        arr = np.asarray(vectors.detach().cpu().numpy() if hasattr(vectors, "detach") else vectors)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise DescribeError(f"{name}: expected shape [k, dim] or [dim], got {list(arr.shape)}")
        vectors = list(arr)
    out = []
    for j, v in enumerate(vectors):
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        try:
            a = np.asarray(v, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise DescribeError(f"{name}[{j}]: not a numeric vector ({e})") from None
        if a.ndim != 1:
            raise DescribeError(f"{name}[{j}]: expected a 1-D vector, got shape {list(a.shape)}")
        out.append(a)
    return out


def check_vector(v: np.ndarray, space: SpaceSpec, label: str) -> None:
    if v.shape[0] != space.dim:
        raise DescribeError(f"{label}: vector has dimension {v.shape[0]}, space {space.name!r} expects {space.dim}")
    finite = np.isfinite(v)
    if not finite.all():
        raise DescribeError(f"{label}: vector has NaN/inf at position(s) {np.flatnonzero(~finite)[:5].tolist()}")


__all__ = ["as_id", "as_vector_list", "check_vector"]
