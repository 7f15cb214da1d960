"""Train / held-out splits of movies and users that every later stage agrees on.

An id is held out when a seeded 64-bit hash of it falls below the held-out fraction. Unlike a shuffled
permutation, this keeps every id's side fixed when the catalog grows: adding movies never moves old ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TRAIN, HELDOUT = "train", "heldout"


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def assign(ids, heldout_fraction: float, seed: int, salt: int = 0) -> np.ndarray:
    """``"heldout"`` or ``"train"`` for each id, deterministically."""
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    ids = np.asarray(ids, dtype=np.int64)
    with np.errstate(over="ignore"):
        h = _splitmix64(ids.astype(np.uint64) ^ _splitmix64(np.array([seed * 1_000_003 + salt], dtype=np.uint64)))
    u = (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.where(u < heldout_fraction, HELDOUT, TRAIN)


def split_table(ids, id_name: str, heldout_fraction: float, seed: int, salt: int) -> pd.DataFrame:
    ids = np.unique(np.asarray(ids, dtype=np.int64))
    split = assign(ids, heldout_fraction, seed, salt)
    if (split == HELDOUT).sum() == 0 or (split == TRAIN).sum() == 0:
        raise ValueError(f"{id_name} split of {len(ids)} ids at fraction {heldout_fraction} leaves one side empty")
    return pd.DataFrame({id_name: ids.astype(np.int32), "split": split})


def hash_order(ids, seed: int, salt: int = 0) -> np.ndarray:
    """ids sorted by a seeded hash: a random-looking order that is stable when ids are added or removed."""
    ids = np.asarray(ids, dtype=np.int64)
    with np.errstate(over="ignore"):
        h = _splitmix64(ids.astype(np.uint64) ^ _splitmix64(np.array([seed * 1_000_003 + salt], dtype=np.uint64)))
    return ids[np.argsort(h, kind="stable")]
