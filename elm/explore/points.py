"""A point of the page, as a vector: a movie, the mix of two movies at a, a movie moved a standard deviations
along a concept (CAV), a user, or a raw vector; each checked (known ids, dimension, finite, a in range) with an
ExploreError that names the field. Plus where the point falls on the map and its nearest real movie.

    {"movie": 1}                                    {"movies": [1, 2571], "a": 0.3}
    {"movie": 1, "attribute": "genre:Comedy", "a": 1.5}      {"user": 5}      {"vector": [...384 numbers]}
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from elm import vectors as vec
from elm.evaluate.interpolation import lerp
from elm.explore.catalog import Catalog, ExploreError
from elm.lineage import read_tables

if TYPE_CHECKING:  # both import torch or sklearn: loaded on first use, not while the map is being served
    from elm.evaluate.cav import CAV
    from elm.serve.spaces import SpaceTable

CONCEPT_RANGE = (-3.0, 3.0)
"""a along a concept, in standard deviations of the attribute (the evaluation moves 0, 1.5 and 3)."""
MIX_RANGE = (0.0, 1.0)
CAV_SEED = 0
"""The evaluation's seed and held-out split: the direction fitted here is the one it measured."""


@dataclass
class Point:
    space: str
    kind: str  # "movie" | "user"
    vector: np.ndarray
    label: str
    movie_id: int | None = None
    user_id: int | None = None
    attribute: str | None = None


class Points:
    """Vector tables and concept directions of a Catalog's spaces (loaded once, thread-safe)."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self._tables: dict[str, SpaceTable] = {}
        self._cavs: dict[tuple[str, str], CAV] = {}
        self._lock = threading.Lock()

    def table(self, space: str) -> SpaceTable:
        from elm.serve.describe import TABLE_FILES
        from elm.serve.spaces import SpaceTable

        with self._lock:
            if space not in self._tables:
                spec = self.catalog.spaces[space]
                art = self.catalog.store.resolve(*spec.source.split("/", 1))
                titles = self.catalog.movies["title"].to_dict() if spec.kind == "movie" else {}
                self._tables[space] = SpaceTable(spec, vec.read(art.file(TABLE_FILES[spec.kind])),
                                                 f"{spec.source}/{TABLE_FILES[spec.kind]}", titles)
            return self._tables[space]

    def cav(self, space: str, attribute: str) -> CAV:
        from elm.evaluate.cav import CAVError, fit_cav, movie_labels

        if attribute not in self.catalog.attributes(space):
            raise ExploreError(f"attribute {attribute!r} has no concept direction in {space}; choose one of "
                               f"{', '.join(self.catalog.attributes(space)) or '(none: run elm evaluate)'}", 404)
        key = (space, attribute)
        if key not in self._cavs:
            c = self.catalog
            tags = read_tables(c.lineage.ingest, ("tags",))["tags"] if attribute.startswith("tag:") else None
            movies = c.movies.rename_axis("movieId").reset_index()[["movieId", "genres"]]
            try:
                cav = fit_cav(self.table(space).vectors, movie_labels(attribute, movies, tags),
                              c.heldout["movie"], attribute=attribute, space=space, seed=CAV_SEED)
            except (CAVError, ValueError) as e:
                raise ExploreError(str(e), 422) from None
            with self._lock:
                self._cavs[key] = cav
        return self._cavs[key]

    # -- requests -> points ------------------------------------------------------------------------

    def point(self, body: dict) -> Point:
        if not isinstance(body, dict):
            raise ExploreError("the request body must be a JSON object, e.g. {\"movie\": 1}")
        if "user" in body:
            space = self.catalog.space(body.get("user_space"), "user").name
            uid = _int(body["user"], "user")
            return Point(space, "user", self._lookup(space, uid, "user"), f"userId {uid}", user_id=uid)
        space = self.catalog.space(body.get("space"), "movie").name
        if "vector" in body:
            v = _vector(body["vector"], self.catalog.spaces[space].dim, space)
            return Point(space, "movie", v, "a raw vector")
        if "movies" in body:
            ids = body["movies"]
            if not isinstance(ids, list) or len(ids) != 2:
                raise ExploreError(f"movies: give two movie ids to mix, got {ids!r}")
            a_id, b_id = (_int(x, "movies") for x in ids)
            a = _alpha(body, MIX_RANGE, "the mix of two movies")
            va, vb = self._lookup(space, a_id, "movies"), self._lookup(space, b_id, "movies")
            return Point(space, "movie", lerp(va, vb, a).astype(np.float32),
                         f"movieId {a_id} + movieId {b_id} at a={a:g}", movie_id=a_id if a < 0.5 else b_id)
        if "movie" not in body:
            raise ExploreError("say which point: one of movie, movies (+ a), movie + attribute (+ a), user, vector")
        mid = _int(body["movie"], "movie")
        v = self._lookup(space, mid, "movie")
        if "attribute" not in body:
            return Point(space, "movie", v, f"movieId {mid}", movie_id=mid)
        attr = body["attribute"]
        if not isinstance(attr, str):
            raise ExploreError(f"attribute: expected a name like 'genre:Comedy', got {attr!r}")
        a = _alpha(body, CONCEPT_RANGE, f"a move along {attr}")
        return Point(space, "movie", self.cav(space, attr).move(v, a), f"movieId {mid} + {a:g} sd of {attr}",
                     movie_id=mid, attribute=attr)

    def _lookup(self, space: str, entity_id: int, field: str) -> np.ndarray:
        t = self.table(space)
        if not np.isin(entity_id, t.vectors.ids):
            raise ExploreError(f"{field}: unknown {t.id_name} {entity_id} (not in {t.where}); search a title on "
                               "the map or pick a listed id", 404)
        return t.lookup([entity_id])[0]

    def locate(self, p: Point) -> dict:
        """Where a point is: map x, y (movie spaces), nearest real entity, its cosine, the "outside" flag."""
        t = self.table(p.space)
        (nid,), (cos,) = t.nearest(p.vector[None, :])
        ref = t.reference_cosine()
        out = {"space": p.space, "label": p.label, "nearest_id": int(nid), "nearest_cosine": round(float(cos), 4),
               "nearest_title": t.titles.get(int(nid)), "reference_cosine": round(ref, 4),
               "outside": bool(cos < ref)}
        if not np.any(p.vector):
            out |= {"nearest_id": None, "nearest_title": None, "nearest_cosine": None, "outside": None}
        if p.kind == "movie":
            x, y = self.catalog.projection(p.space).place(p.vector)[0]
            out |= {"x": round(float(x), 4), "y": round(float(y), 4)}
        if p.attribute:
            out["attribute_probability"] = round(float(self.cav(p.space, p.attribute).probability(p.vector)), 4)
        return out


def _int(x, field: str) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, str)) or (isinstance(x, str) and not x.strip().isdigit()):
        raise ExploreError(f"{field}: {x!r} is not an integer id")
    return int(x)


def _alpha(body: dict, bounds: tuple[float, float], what: str) -> float:
    a = body.get("a", 0.5 if bounds == MIX_RANGE else 0.0)
    if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a):
        raise ExploreError(f"a: expected a number for {what}, got {a!r}")
    if not bounds[0] <= a <= bounds[1]:
        raise ExploreError(f"a = {a:g} is out of range for {what}: use {bounds[0]:g} to {bounds[1]:g}")
    return float(a)


def _vector(x, dim: int, space: str) -> np.ndarray:
    if not isinstance(x, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in x):
        raise ExploreError("vector: expected a list of numbers")
    v = np.asarray(x, dtype=np.float32)
    if v.shape != (dim,):
        raise ExploreError(f"vector: has dimension {len(x)}, space {space!r} expects {dim}")
    if not np.isfinite(v).all():
        raise ExploreError(f"vector: NaN/inf at position(s) {np.flatnonzero(~np.isfinite(v))[:5].tolist()}; "
                           "send finite numbers")
    return v


__all__ = ["Point", "Points"]
