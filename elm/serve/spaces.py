"""A space's real vectors: id lookup, the nearest real entity of any vector, and how near is "near"."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from elm import vectors as vec
from elm.model.config import SpaceSpec
from elm.serve.errors import DescribeError

REFERENCE_QUANTILE = 0.05
"""A vector is ``outside`` the data when its nearest real entity is further than this share of real
entities' own nearest neighbours (the 5th percentile of their nearest-neighbour cosine)."""
REFERENCE_SAMPLE = 2000
REFERENCE_SEED = 0


class SpaceTable:
    """One space's real vectors (and movie titles): id lookup and cosine nearest neighbours."""

    def __init__(self, space: SpaceSpec, vectors: vec.Vectors, where: str,
                 titles: Mapping[int, str] | None = None):
        if vectors.dim != space.dim:
            raise DescribeError(f"space {space.name!r}: the vector table {where} has dimension {vectors.dim}, "
                                f"the ELM reads {space.dim}")
        order = np.argsort(vectors.ids, kind="stable")  # Vectors.index needs sorted ids
        self.vectors = vec.Vectors(vectors.id_name, np.asarray(vectors.ids, dtype=np.int64)[order],
                                   np.asarray(vectors.matrix, dtype=np.float32)[order])
        vec.validate(self.vectors, what=where, expected_dim=space.dim)
        self.space, self.where, self.titles = space, where, dict(titles or {})
        self.unit = vec.unit_rows(self.vectors.matrix, np.float32)
        norms = np.linalg.norm(self.vectors.matrix, axis=1)
        self.norm_range = (float(norms.min()), float(norms.max())) if len(norms) else None
        """Smallest and largest norm of the real vectors (None for an empty table)."""
        self._reference: float | None = None
        self.mean = self.vectors.matrix.mean(axis=0) if len(self.vectors.ids) else None
        """The average real vector: the null input of vector guidance (elm/model/guidance.py)."""

    @property
    def id_name(self) -> str:
        return self.vectors.id_name

    def lookup(self, ids: Sequence[int]) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        known = np.isin(ids, self.vectors.ids)
        if not known.all():
            raise DescribeError(f"{self.id_name} {ids[~known].tolist()[:10]} not in space {self.space.name!r} "
                                f"(table {self.where}, {len(self.vectors.ids)} {self.id_name}s)")
        return self.vectors.get(ids)

    def nearest(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids, cosines) of each query's nearest real entity."""
        sims = vec.unit_rows(queries, np.float32) @ self.unit.T
        best = sims.argmax(axis=1)
        return self.vectors.ids[best], sims[np.arange(len(best)), best]

    def reference_cosine(self) -> float:
        """5th percentile of real entities' cosine to their nearest other entity (a seeded sample of them)."""
        if self._reference is None:
            n = len(self.unit)
            if n < 2:
                self._reference = -1.0
            else:
                rng = np.random.default_rng(REFERENCE_SEED)
                rows = np.sort(rng.choice(n, size=min(n, REFERENCE_SAMPLE), replace=False))
                best = []
                for start in range(0, len(rows), 512):
                    chunk = rows[start:start + 512]
                    sims = self.unit[chunk] @ self.unit.T
                    sims[np.arange(len(chunk)), chunk] = -np.inf  # not itself
                    best.append(sims.max(axis=1))
                self._reference = float(np.quantile(np.concatenate(best), REFERENCE_QUANTILE))
        return self._reference


__all__ = ["SpaceTable"]
