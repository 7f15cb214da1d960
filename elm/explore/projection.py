"""The 2-D map of an embedding space: a PCA projection, computed once per vector artifact and kept as its own
versioned artifact (``projection/<version>/points.parquet``, view ``projection_points`` in ``elm sql``).

PCA, not t-SNE or UMAP: it is linear, so the projection of any new vector (a mix of two movies, a movie moved
along a concept) is exact and instant, and the path between two movies is the straight segment between their
points, which the page can draw truthfully; it is also deterministic and takes well under a second on 10k rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from elm import vectors as vec
from elm.artifacts import Artifact, ArtifactStore, WorkDir

STAGE = "projection"
CODE_VERSION = "1"
POINTS_FILE = "points.parquet"
BASIS_FILE = "basis.parquet"
"""Rows "mean", "pc1", "pc2": the centre and the two axes, so a new vector projects as (v - mean) @ [pc1, pc2]."""
SOURCE_STAGES = ("semantic", "behavioral")


@dataclass(frozen=True)
class Projection:
    """A space's 2-D map: the points of its real entities and the basis that places any other vector."""

    artifact: Artifact
    id_name: str
    ids: np.ndarray
    xy: np.ndarray
    mean: np.ndarray
    axes: np.ndarray  # [2, dim]
    explained: tuple[float, float]

    def place(self, vectors: np.ndarray) -> np.ndarray:
        """[n, 2] map coordinates of vectors of this space."""
        return (np.atleast_2d(np.asarray(vectors, dtype=np.float32)) - self.mean) @ self.axes.T


def _pca(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, svd_solver="full").fit(matrix.astype(np.float64))
    axes = pca.components_.astype(np.float32)
    # An axis's sign is arbitrary: fix it (largest loading positive) so rebuilds draw the same map.
    axes *= np.sign(axes[np.arange(2), np.abs(axes).argmax(axis=1)])[:, None]
    return pca.mean_.astype(np.float32), axes, pca.explained_variance_ratio_


def projection_of(store: ArtifactStore, source: Artifact, table: str = "movies.parquet") -> Projection:
    """The projection of ``source``'s vector ``table`` (a semantic or behavioral artifact): built once, then a
    cache hit (``store.produce``)."""
    if source.stage not in SOURCE_STAGES:
        raise ValueError(f"projection: {source.stage}/{source.version} is not a vector artifact "
                         f"(expected one of {', '.join(SOURCE_STAGES)})")

    def build(work: WorkDir) -> None:
        v = vec.read(source.file(table))
        mean, axes, ratio = _pca(v.matrix)
        xy = (v.matrix - mean) @ axes.T
        pd.DataFrame({v.id_name: v.ids.astype(np.int64), "x": xy[:, 0].astype(np.float32),
                      "y": xy[:, 1].astype(np.float32)}).to_parquet(work.path / POINTS_FILE, index=False)
        pd.DataFrame({"row": ["mean", "pc1", "pc2"], "vector": [mean.tolist(), *axes.tolist()],
                      "explained_variance_ratio": [np.nan, *map(float, ratio)]}
                     ).to_parquet(work.path / BASIS_FILE, index=False)
        work.summary = {"method": "pca", "source": f"{source.stage}/{source.version}", "table": table,
                        "rows": len(v.ids), "explained_variance_ratio": [round(float(r), 4) for r in ratio]}

    art, _ = store.produce(STAGE, inputs={source.stage: source.version},
                           config={"method": "pca", "components": 2, "table": table},
                           code_version=CODE_VERSION, build=build)
    points = pd.read_parquet(art.file(POINTS_FILE))
    basis = pd.read_parquet(art.file(BASIS_FILE)).set_index("row")
    id_name = points.columns[0]
    ratio = basis["explained_variance_ratio"]
    return Projection(art, id_name, points[id_name].to_numpy(np.int64),
                      points[["x", "y"]].to_numpy(np.float32), np.asarray(basis.at["mean", "vector"], np.float32),
                      np.stack([np.asarray(basis.at[r, "vector"], np.float32) for r in ("pc1", "pc2")]),
                      (float(ratio["pc1"]), float(ratio["pc2"])))


__all__ = ["Projection", "projection_of"]
