"""Concept activation vectors (CAVs), docs/METHOD.md "Experiments": a soft attribute as a direction in an embedding space.

A soft attribute is ``genre:<name>`` or ``tag:<name>`` ("genre:Comedy", "tag:funny"). Labels:

    movie  genre  positive when the movie's genres include it (case-insensitive)
           tag    with the tag genome (ml-25m): positive when its genome relevance >= threshold; movies
                  without genome scores are left unlabelled. Otherwise: positive when any user applied the
                  tag (case-insensitive, stripped), negative for every other movie.
    user          affinity = share of the user's liked ratings (>= liked) that fall on positive movies;
                  positive when affinity >= the 0.75 quantile over users and > 0 (the top quarter).

A balanced logistic regression on the raw vectors separates positives from negatives; the CAV is the
unit normal of its boundary, direction = coef / |coef|. Moving along it, w + alpha * scale * direction
with scale = std of the labelled entities' projections onto direction, means alpha counts standard
deviations of the attribute, so the same alpha is a comparable step in every space. Accuracy is measured
on held-out entities only: a CAV that does not separate unseen entities says nothing about the space.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score

from elm.metrics.semantic_consistency import unit
from elm.vectors import Vectors

KINDS = ("genre", "tag")


class CAVError(ValueError):
    """A CAV that cannot be fitted or judged: too few positives/negatives, or nothing held out."""


@dataclass(frozen=True)
class Attribute:
    kind: str
    value: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.value}"


def parse_attribute(s: str | Attribute) -> Attribute:
    """``"genre:Comedy"`` -> Attribute("genre", "Comedy"); an Attribute passes through."""
    if isinstance(s, Attribute):
        return s
    kind, sep, value = str(s).partition(":")
    kind, value = kind.strip().lower(), value.strip()
    if not sep or kind not in KINDS or not value:
        raise ValueError(f"soft attribute {s!r}: expected one of " + ", ".join(f"'{k}:<name>'" for k in KINDS)
                         + ", e.g. 'genre:Comedy' or 'tag:funny'")
    return Attribute(kind, value)


def _genre_labels(attr: Attribute, movies: pd.DataFrame) -> pd.Series:
    genres = movies.set_index("movieId")["genres"].explode()
    if genres.map(lambda g: isinstance(g, str) and "|" in g).any():
        raise ValueError("movies.genres must hold a list of genres per movie; split the MovieLens "
                         "'A|B' strings on '|' first")
    hits = genres.str.lower() == attr.value.lower()
    if not hits.any():
        known = sorted(genres.dropna().unique())
        raise ValueError(f"{attr.key}: no movie has genre {attr.value!r}; known genres include "
                         f"{', '.join(known[:12])}{', ...' if len(known) > 12 else ''}")
    return hits.groupby(level=0).any()


def _genome_labels(attr: Attribute, movie_ids: pd.Index, genome_scores: pd.DataFrame,
                   genome_tags: pd.DataFrame, threshold: float) -> pd.Series | None:
    tag_ids = genome_tags.loc[genome_tags["tag"].str.strip().str.lower() == attr.value.lower(), "tagId"]
    if tag_ids.empty:
        return None
    scores = genome_scores[genome_scores["tagId"].isin(tag_ids)]
    relevance = scores.groupby("movieId")["relevance"].max()
    relevance = relevance[relevance.index.isin(movie_ids)]
    return relevance >= threshold


def _user_tag_labels(attr: Attribute, movie_ids: pd.Index, tags: pd.DataFrame) -> pd.Series:
    applied = tags["tag"].astype(str).str.strip().str.lower() == attr.value.lower()
    if not applied.any():
        common = tags["tag"].astype(str).str.strip().str.lower().value_counts().index[:12]
        raise ValueError(f"{attr.key}: no user applied tag {attr.value!r}; common tags include "
                         f"{', '.join(common)}")
    return pd.Series(movie_ids.isin(tags.loc[applied, "movieId"]), index=movie_ids)


def movie_labels(attr: str | Attribute, movies: pd.DataFrame, tags: pd.DataFrame | None = None,
                 genome_scores: pd.DataFrame | None = None, genome_tags: pd.DataFrame | None = None,
                 genome_threshold: float = 0.5) -> pd.Series:
    """Which movies have the attribute: bool Series indexed by movieId (unlabelled movies left out)."""
    attr = parse_attribute(attr)
    if attr.kind == "genre":
        out = _genre_labels(attr, movies)
    else:
        movie_ids = pd.Index(movies["movieId"].unique(), name="movieId")
        out = None
        if genome_scores is not None and genome_tags is not None:
            out = _genome_labels(attr, movie_ids, genome_scores, genome_tags, genome_threshold)
        if out is None:
            if tags is None:
                raise ValueError(f"{attr.key}: a tag attribute needs the tags table, or a tag genome "
                                 f"that contains {attr.value!r}")
            out = _user_tag_labels(attr, movie_ids, tags)
    out = out.astype(bool).rename(attr.key)
    out.index = out.index.astype(np.int64).rename("movieId")
    return out.sort_index()


def user_labels(attr: str | Attribute, ratings: pd.DataFrame, movie_labels: pd.Series, liked: float = 4.0,
                quantile: float = 0.75) -> pd.Series:
    """Which users favour the attribute: bool Series indexed by userId.

    Only liked ratings of labelled movies count; a user with none is left unlabelled (no evidence either way).
    """
    attr = parse_attribute(attr)
    if not 0 < quantile < 1:
        raise ValueError(f"user_labels: quantile must be in (0, 1), got {quantile}")
    liked_rows = ratings.loc[ratings["rating"] >= liked, ["userId", "movieId"]]
    has = liked_rows["movieId"].map(movie_labels.astype(bool))
    known = has.notna()
    if not known.any():
        raise ValueError(f"{attr.key}: no rating >= {liked} falls on a labelled movie")
    affinity = has[known].astype(float).groupby(liked_rows.loc[known, "userId"]).mean()
    # "> 0" matters for rare attributes: when most users never liked one, the quantile itself is 0.
    out = (affinity >= affinity.quantile(quantile)) & (affinity > 0)
    out.index = out.index.astype(np.int64).rename("userId")
    return out.rename(attr.key).sort_index()


@dataclass
class CAV:
    attribute: str
    space: str
    direction: np.ndarray  # unit float32 [d]
    coef: np.ndarray  # the classifier's raw weights [d]
    intercept: float
    scale: float  # std of the labelled entities' projections onto direction
    n_pos: int  # in the training part
    n_neg: int
    train_accuracy: float
    heldout_accuracy: float
    heldout_balanced_accuracy: float  # NaN when the held-out part has one class only
    n_heldout: int

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape[-1:] != self.direction.shape or vectors.ndim not in (1, 2):
            raise ValueError(f"CAV {self.attribute} ({self.space}) has dimension {len(self.direction)}, "
                             f"got vectors of shape {vectors.shape}")
        return vectors

    def move(self, vectors: np.ndarray, alpha: float | np.ndarray) -> np.ndarray:
        """vectors + alpha * scale * direction: alpha standard deviations along the attribute (float32);
        alpha a number, or one per row of vectors."""
        vectors = self._check(vectors)
        a = np.asarray(alpha, dtype=np.float32)
        if a.ndim == 1:
            if vectors.ndim != 2 or len(a) != len(vectors):
                raise ValueError(f"CAV.move: {len(a)} alphas for vectors of shape {vectors.shape}")
            a = a[:, None]
        return (vectors + a * np.float32(self.scale) * self.direction).astype(np.float32)

    def probability(self, vectors: np.ndarray) -> np.ndarray:
        """The classifier's probability that each vector has the attribute: [n] (a float for one vector [d])."""
        vectors = self._check(vectors).astype(np.float64)
        p = expit(vectors @ np.asarray(self.coef, dtype=np.float64) + self.intercept)
        return float(p) if vectors.ndim == 1 else p

    ROW_COLUMNS = ("attribute", "space", "dim", "coef_norm", "intercept", "scale", "n_pos", "n_neg",
                   "train_accuracy", "heldout_accuracy", "heldout_balanced_accuracy", "n_heldout")
    """The keys of to_row, in order (an empty table keeps them: a Parquet file needs columns)."""

    def to_row(self) -> dict:
        """Scalars only, one row of a CAV summary table."""
        return {
            "attribute": self.attribute, "space": self.space, "dim": int(len(self.direction)),
            "coef_norm": float(np.linalg.norm(self.coef)), "intercept": float(self.intercept),
            "scale": float(self.scale), "n_pos": int(self.n_pos), "n_neg": int(self.n_neg),
            "train_accuracy": float(self.train_accuracy), "heldout_accuracy": float(self.heldout_accuracy),
            "heldout_balanced_accuracy": float(self.heldout_balanced_accuracy), "n_heldout": int(self.n_heldout),
        }


def fit_cav(vectors: Vectors, labels: pd.Series, heldout_ids: Iterable[int], *, attribute: str, space: str,
            min_positives: int = 10, seed: int = 0) -> CAV:
    """Fit the CAV of ``attribute`` in ``space`` on labelled entities outside ``heldout_ids``; judge it on those."""
    where = f"CAV {attribute} in {space}"
    if labels.index.has_duplicates:
        raise CAVError(f"{where}: labels have duplicate {vectors.id_name}s")
    labels = labels.dropna().astype(bool)
    ids = np.intersect1d(vectors.ids, labels.index.to_numpy(dtype=np.int64))
    if not len(ids):
        raise CAVError(f"{where}: none of the {len(labels)} labelled {vectors.id_name}s has a vector")
    x = vectors.get(ids)
    y = labels.loc[ids].to_numpy()
    held = np.isin(ids, np.fromiter(heldout_ids, dtype=np.int64))
    train_y = y[~held]
    n_pos, n_neg = int(train_y.sum()), int((~train_y).sum())
    for name, n in (("positives", n_pos), ("negatives", n_neg)):
        if n < min_positives:
            raise CAVError(f"{where}: {n} {name} in the training part ({len(train_y)} labelled "
                           f"{vectors.id_name}s with vectors), need at least {min_positives}")
    if not held.any():
        raise CAVError(f"{where}: no held-out {vectors.id_name} is labelled and has a vector, "
                       "so the CAV could not be judged")

    clf = LogisticRegression(class_weight="balanced", max_iter=2000, C=1.0, random_state=seed)
    clf.fit(x[~held], train_y)
    coef = clf.coef_[0].astype(np.float64)
    direction = unit(coef)
    held_y, held_pred = y[held], clf.predict(x[held])
    balanced = balanced_accuracy_score(held_y, held_pred) if len(np.unique(held_y)) == 2 else float("nan")
    return CAV(
        attribute=attribute, space=space, direction=direction, coef=coef, intercept=float(clf.intercept_[0]),
        scale=float(np.std(x.astype(np.float64) @ direction.astype(np.float64))),
        n_pos=n_pos, n_neg=n_neg, train_accuracy=float(clf.score(x[~held], train_y)),
        heldout_accuracy=float(np.mean(held_pred == held_y)), heldout_balanced_accuracy=float(balanced),
        n_heldout=int(held.sum()),
    )
