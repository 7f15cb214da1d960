"""What to generate: every (entity, task, partner) row of the dataset to be, in a fixed order.

Which entities: a seeded sample of each split (sizes are config, so the embedded default fits its time
budget). Training movies get `tasks_per_movie` tasks each, sampled per movie: more distinct vectors
teach an adapter more than more tasks of the same vector. Held-out movies get every task, because they
are the ground truth that evaluation compares ELM with, task by task.
"""

from __future__ import annotations

import logging
from functools import reduce

import numpy as np
import pandas as pd

from elm import vectors as vec
from elm.artifacts import Artifact
from elm.data.ingest import read_ingest_tables
from elm.embed.spaces import stages_of
from elm.embed.splits import HELDOUT, TRAIN, hash_order
from elm.synth.catalog import select_tasks
from elm.synth.config import SynthesisConfig, SynthesisError
from elm.synth.facts import movie_facts, user_facts
from elm.synth.teachers.template import Movie

log = logging.getLogger(__name__)


def _has_metadata(facts: dict) -> bool:
    try:
        Movie.of(facts)
        return True
    except ValueError:
        return False


def eligible_movies(facts: pd.DataFrame, ratings: pd.DataFrame, vectors: list[vec.Vectors], min_ratings: int) -> pd.Index:
    """Movies a target can be written for and trained on: metadata, enough ratings, a vector in every space."""
    counts = ratings["movieId"].value_counts()
    ok = facts["movieId"].map(counts).fillna(0).to_numpy() >= min_ratings
    for v in vectors:
        ok &= np.isin(facts["movieId"].to_numpy(), v.ids)
    meta = np.array([_has_metadata(r) for r in facts.to_dict("records")])
    if (~meta).any():
        log.info("synthesize: %d movies have no metadata (no genres, tags or year) and are skipped, e.g. %s",
                 int((~meta).sum()), facts.loc[~meta, "movieId"].head(5).tolist())
    return pd.Index(facts.loc[ok & meta, "movieId"].to_numpy())


def _sample(ids, n: int | None, seed: int, salt: int) -> list[int]:
    order = hash_order(np.asarray(ids, dtype=np.int64), seed, salt)
    return [int(i) for i in (order if n is None else order[:n])]


def plan_items(cfg: SynthesisConfig, movie_split: pd.Series, user_split: pd.Series, eligible: pd.Index,
               eligible_users: pd.Index, partner_vectors: vec.Vectors) -> pd.DataFrame:
    """Every (entity, task, partner) to generate, in a fixed order: the rows of the dataset to be."""
    tasks = select_tasks(list(cfg.tasks))
    movie_tasks = [t for t in tasks if "movie" in t.slots]
    user_tasks = [t for t in tasks if "user" in t.slots]
    rows = []
    pools = {s: np.asarray(sorted(set(eligible) & set(movie_split[movie_split == s].index)), dtype=np.int64)
             for s in (TRAIN, HELDOUT)}
    if movie_tasks:
        for split, n in ((TRAIN, cfg.train_movies), (HELDOUT, cfg.heldout_movies)):
            pool = pools[split]
            if n and len(pool) == 0:
                raise SynthesisError(f"no eligible {split} movies (metadata, >= {cfg.min_movie_ratings} ratings, "
                                     f"vectors): lower min_movie_ratings or check the inputs")
            # Partners come from the same split: a training pair must not carry a held-out vector.
            unit = vec.unit_rows(partner_vectors.get(pool))
            for mid in _sample(pool, n, cfg.seed, salt=11 if split == TRAIN else 12):
                rng = np.random.default_rng([cfg.seed, mid])
                chosen = movie_tasks
                if split == TRAIN and cfg.tasks_per_movie and cfg.tasks_per_movie < len(movie_tasks):
                    pick = np.sort(rng.choice(len(movie_tasks), cfg.tasks_per_movie, replace=False))
                    chosen = [movie_tasks[i] for i in pick]
                for t in chosen:
                    partner = None
                    if t.partner == "random":
                        others = pool[pool != mid]
                        partner = int(others[rng.integers(len(others))]) if len(others) else None
                    elif t.partner == "nearest":
                        own = int(np.searchsorted(pool, mid))
                        best, _ = vec.top_k(unit, unit[own], 1, [own])
                        partner = int(pool[best[0]]) if len(best) else None
                    if t.partner is not None and partner is None:
                        continue  # a pool of one movie has no partner to offer
                    rows.append(("movie", mid, partner, t.name, split))
    for t in user_tasks:
        for split, n in ((TRAIN, cfg.train_users), (HELDOUT, cfg.heldout_users)):
            pool = sorted(set(eligible_users) & set(user_split[user_split == split].index))
            for uid in _sample(pool, n, cfg.seed, salt=21 if split == TRAIN else 22):
                rows.append(("user", uid, None, t.name, split))
    items = pd.DataFrame(rows, columns=["kind", "entity_id", "partner_id", "task", "split"])
    items["partner_id"] = items["partner_id"].astype("Int64")
    items["entity_id"] = items["entity_id"].astype("int64")
    return items


def plan(arts: dict[str, Artifact], cfg: SynthesisConfig) -> tuple[pd.DataFrame, dict[str, dict[int, dict]]]:
    """(items, facts): every row to generate, in chunk order, and the facts the teacher reads. A pure
    function of the inputs and the config, so any process can recompute it (run_chunk)."""
    t = read_ingest_tables(arts["ingest"], ("movies", "tags", "ratings", "genome_scores", "genome_tags"))
    # A movie or user is trained on in every space, so it needs a vector in each of them.
    movie_spaces = {st: vec.read(arts[st].file(vec.TABLES["movie"])) for st in stages_of("movie")}
    user_ids = reduce(np.intersect1d, [vec.read(arts[st].file(vec.TABLES["user"])).ids for st in stages_of("user")])
    msplit = pd.read_parquet(arts["splits"].file("movies.parquet")).set_index("movieId")["split"]
    usplit = pd.read_parquet(arts["splits"].file("users.parquet")).set_index("userId")["split"]
    mf = movie_facts(t["movies"], t.get("tags"), t.get("genome_scores"), t.get("genome_tags"))
    uf = user_facts(t["ratings"], t["movies"])
    eligible = eligible_movies(mf, t["ratings"], list(movie_spaces.values()), cfg.min_movie_ratings)
    eligible_users = pd.Index(uf.loc[uf["liked"].map(len) > 0, "userId"]).intersection(pd.Index(user_ids))
    partner_vectors = movie_spaces[cfg.partner_space]
    items = plan_items(cfg, msplit, usplit, eligible, eligible_users, partner_vectors)
    if items.empty:
        raise SynthesisError("nothing to generate: every entity count is 0 or no entity is eligible")
    facts = {"movie": {int(r["movieId"]): r for r in mf.to_dict("records")},
             "user": {int(r["userId"]): r for r in uf.to_dict("records")}}
    return items, facts
