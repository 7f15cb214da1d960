"""Embedding tables on disk: Parquet with an id column and a fixed-size float32 list column ``vector``.

One format for every embedding space, so DuckDB can query them (``list_cosine_similarity``, array
functions) and every later stage reads them the same way, with the same checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


KINDS = ("movie", "user")
"""What a vector can stand for. Each kind has its table name in every embedding artifact."""
TABLES = {"movie": "movies.parquet", "user": "users.parquet"}
ID_COLUMNS = {"movie": "movieId", "user": "userId"}


def unit_rows(m: np.ndarray, dtype=None) -> np.ndarray:
    """Rows (or one vector) scaled to unit length; zero rows stay zero. ``dtype`` casts first."""
    m = np.asarray(m) if dtype is None else np.asarray(m, dtype=dtype)
    return m / np.maximum(np.linalg.norm(m, axis=-1, keepdims=True), 1e-12)


def top_k(unit_matrix: np.ndarray, unit_query: np.ndarray, k: int, exclude_rows=()) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the k highest cosines to one query (both unit-length), best first, and their cosines.
    Ties go to the lower row (a stable sort), so the same inputs always give the same neighbours."""
    sims = unit_matrix @ unit_query
    if len(exclude_rows):
        sims[np.asarray(exclude_rows)] = -np.inf
    rows = np.argsort(-sims, kind="stable")[:k]
    rows = rows[np.isfinite(sims[rows])]
    return rows, sims[rows]


class VectorError(ValueError):
    """Vectors that are malformed, non-finite, duplicated, of the wrong dimension, or unreadable."""


@dataclass
class Vectors:
    """Rows of ``matrix`` belong to ``ids`` (sorted, unique)."""

    id_name: str
    ids: np.ndarray
    matrix: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def index(self, ids) -> np.ndarray:
        """Row positions of ``ids``; raises on an unknown id."""
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(self.ids, ids)
        pos = np.clip(pos, 0, len(self.ids) - 1)
        bad = self.ids[pos] != ids
        if bad.any():
            raise KeyError(f"unknown {self.id_name}(s): {ids[bad][:10].tolist()}")
        return pos

    def get(self, ids) -> np.ndarray:
        return self.matrix[self.index(ids)]

    def nearest(self, query: np.ndarray, n: int = 5, exclude: set[int] | None = None) -> list[tuple[int, float]]:
        """Cosine nearest neighbours of one query vector: [(id, cosine)]."""
        skip = np.flatnonzero(np.isin(self.ids, list(exclude or ())))
        rows, sims = top_k(unit_rows(self.matrix), unit_rows(query), n, skip)
        return [(int(self.ids[i]), float(s)) for i, s in zip(rows, sims)]


def validate(vectors: Vectors, *, what: str, expected_dim: int | None = None, known_ids=None) -> None:
    """Raise ``VectorError`` naming ``what`` unless the vectors are finite, unique, of the right dim and known."""
    m = vectors.matrix
    if m.ndim != 2 or len(m) != len(vectors.ids):
        raise VectorError(f"{what}: matrix shape {m.shape} does not match {len(vectors.ids)} ids")
    if len(m) == 0:
        raise VectorError(f"{what}: no vectors")
    if expected_dim is not None and m.shape[1] != expected_dim:
        raise VectorError(f"{what}: dimension {m.shape[1]}, expected {expected_dim}")
    finite = np.isfinite(m).all(axis=1)
    if not finite.all():
        raise VectorError(f"{what}: {int((~finite).sum())} vector(s) with NaN/inf, e.g. "
                          f"{vectors.id_name} {vectors.ids[~finite][:5].tolist()}")
    if len(np.unique(vectors.ids)) != len(vectors.ids):
        raise VectorError(f"{what}: duplicate {vectors.id_name}s")
    if known_ids is not None:
        unknown = np.setdiff1d(vectors.ids, np.asarray(known_ids))
        if len(unknown):
            raise VectorError(f"{what}: {len(unknown)} {vectors.id_name}(s) not in the ingested tables, "
                              f"e.g. {unknown[:5].tolist()}")


def write(path: Path, vectors: Vectors) -> Path:
    m = np.ascontiguousarray(vectors.matrix, dtype=np.float32)
    order = np.argsort(vectors.ids, kind="stable")
    flat = pa.array(m[order].reshape(-1), type=pa.float32())
    table = pa.table({
        vectors.id_name: pa.array(np.asarray(vectors.ids)[order].astype(np.int32)),
        "vector": pa.FixedSizeListArray.from_arrays(flat, m.shape[1]),
    })
    pq.write_table(table, path, compression="zstd")
    return path


def read(path: Path, *, expected_dim: int | None = None) -> Vectors:
    """Read and check a vector table; errors name the file."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise VectorError(f"{path}: not a readable Parquet vector table ({e})") from e
    id_cols = [c for c in table.column_names if c != "vector"]
    if "vector" not in table.column_names or len(id_cols) != 1:
        raise VectorError(f"{path}: expected columns <id>, vector; found {table.column_names}")
    col = table.column("vector").combine_chunks()
    if not pa.types.is_fixed_size_list(col.type):
        raise VectorError(f"{path}: column 'vector' is {col.type}, expected a fixed-size float32 list")
    dim = col.type.list_size
    matrix = col.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    v = Vectors(id_cols[0], table.column(id_cols[0]).to_numpy().astype(np.int64), matrix)
    validate(v, what=str(path), expected_dim=expected_dim)
    return v
