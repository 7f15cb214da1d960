"""What the training loop reads: synthesize rows turned into Examples (vectors per slot), the fixed
validation subset, and deterministic batches from (seed, stage, step)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from elm.embed.spaces import SPACE_STAGES, get_space, stages_of
from elm.lineage import resolve_lineage
from elm.model.batch import Example
from elm.model.config import SpaceSpec
from elm.synth.catalog import get_task
from elm.train.config import TrainConfig, TrainingError

if TYPE_CHECKING:
    import pandas as pd

    from elm.artifacts import Artifact

log = logging.getLogger(__name__)

@dataclass
class TrainData:
    """What the loop reads: the ELM's spaces, training examples, the fixed validation subset."""

    spaces: tuple[SpaceSpec, ...]
    train: list[Example]
    val: list[Example]
    samples: dict[str, np.ndarray]
    """A few vectors per space: the adapter's output scale is calibrated on them."""
    counts: dict
    warm_start: tuple[dict, ...] = ()
    """For warm_start.py, one per space training reads: its name, the vectors of its training-split entities
    and their captions. Empty when the config turns the warm start off."""


def load_artifact(path: Path) -> Artifact:
    """A published artifact from its folder (artifacts/<stage>/<version>)."""
    from elm.artifacts import ArtifactError, ArtifactStore

    path = Path(path).resolve()
    art = ArtifactStore(path.parent.parent).get(path.parent.name, path.name)
    if art is None:
        raise ArtifactError(f"{path} is not a published artifact folder (no manifest.json)")
    return art


def row_vectors(rows: pd.DataFrame, tables: dict[str, tuple[str, Any]]) -> tuple[list, np.ndarray]:
    """Per row, [(space, vector)] in slot order, and a mask of rows that have every vector.

    The entity fills the first slot of its kind, the partner the next movie slot (m0 = entity_id,
    m1 = partner_id; u0 = the user).
    """
    import pandas as pd

    out, ok = [], np.ones(len(rows), dtype=bool)
    known = {kind: set(v.ids.tolist()) for kind, (_, v) in tables.items()}
    for i, r in enumerate(rows.itertuples(index=False)):
        queue = {"movie": [], "user": []}
        queue[r.kind].append(int(r.entity_id))
        if pd.notna(r.partner_id):
            queue["movie"].append(int(r.partner_id))
        pairs = []
        for kind in get_task(r.task).slots:
            if not queue[kind]:
                raise TrainingError(f"synthesize row {i} (task {r.task}, {r.kind} {r.entity_id}) has no id "
                                    f"for its {kind} slot")
            eid = queue[kind].pop(0)
            if eid not in known[kind]:
                ok[i] = False
                break
            name, vectors = tables[kind]
            pairs.append((name, vectors.get([eid])[0]))
        out.append(pairs)
    return out, ok


def input_artifacts(synth: Artifact, given: Mapping[str, Artifact] | None = None) -> dict[str, Artifact]:
    """The synthesize artifact and the vector artifacts it was made from: those ``given``, the others found
    through its lineage. A given one must be the version synthesize names: its splits and partners belong
    to those vectors."""
    given = {k: a for k, a in (given or {}).items() if k in SPACE_STAGES}
    named = synth.manifest.get("inputs", {})
    found = resolve_lineage(synth, [k for k in SPACE_STAGES if k not in given])
    arts = {"synthesize": synth, **{k: given.get(k) or found[k] for k in SPACE_STAGES}}
    for k in SPACE_STAGES:
        if named.get(k) and arts[k].version != named[k]:
            raise TrainingError(f"synthesize {synth.version} was made from {k} {named[k]}, not "
                                f"{arts[k].version}: its splits and partners belong to those vectors")
    return arts


def load_data(cfg: TrainConfig, arts: Mapping[str, Artifact]) -> TrainData:
    """Examples from the synthesize rows (train split) and the fixed validation subset (held-out split).
    ``arts``: synthesize and every vector artifact (input_artifacts).

    Rows whose entity or partner has no vector in the chosen space (a movie without ratings has no
    behavioral vector) are dropped and counted.
    """
    import pandas as pd

    from elm import vectors as vec

    synthesize = arts["synthesize"]
    ex = pd.read_parquet(synthesize.file("examples.parquet"),
                         columns=["kind", "entity_id", "partner_id", "task", "split", "elm_prompt", "target"])
    # Movie slots read the chosen space; user slots the first user space (elm/embed/spaces.py).
    chosen = {"movie": get_space(cfg.movie_space, "movie"), "user": get_space(stages_of("user")[0], "user")}
    tables = {k: (s.name, vec.read(arts[s.stage].file(s.table))) for k, s in chosen.items()}
    sources = {k: arts[s.stage] for k, s in chosen.items()}
    pairs, ok = row_vectors(ex, tables)
    dropped = {s: int((~ok & (ex["split"] == s).to_numpy()).sum()) for s in ("train", "heldout")}
    if (~ok).any():
        log.warning("train: dropped %d of %d rows whose entity has no vector in the %s space (e.g. %s ids %s)",
                    int((~ok).sum()), len(ex), cfg.movie_space, ex.loc[~ok, "kind"].iloc[0],
                    ex.loc[~ok, "entity_id"].head(5).tolist())

    def examples(mask: np.ndarray) -> list[Example]:
        return [Example(r.elm_prompt, pairs[i], r.target, get_task(r.task).slots)
                for i, r in zip(np.flatnonzero(mask), ex[mask].itertuples(index=False))]

    train = examples(ok & (ex["split"] == "train").to_numpy())
    used = {kind for e in train for kind in e.slots}
    # Validation only on slot kinds that training teaches (an adapter that never trained has no loss to report).
    teachable = ex["task"].map(lambda t: set(get_task(t).slots) <= used).to_numpy()
    heldout = ok & teachable & (ex["split"] == "heldout").to_numpy()
    if not train:
        raise TrainingError(f"no training rows left in synthesize {synthesize.version} "
                            f"({dropped['train']} dropped for missing {cfg.movie_space} vectors)")
    if cfg.eval_examples and not heldout.any():
        raise TrainingError(f"synthesize {synthesize.version} has no usable held-out rows for the validation "
                            "loss: synthesize held-out movies/users, or set eval_examples=0")
    # A seeded subset, fixed for the whole run: validation losses of different steps are comparable.
    pick = np.flatnonzero(heldout)
    pick = np.sort(np.random.default_rng([cfg.seed, 7]).permutation(pick)[: cfg.eval_examples])
    val_mask = np.zeros(len(ex), dtype=bool)
    val_mask[pick] = True
    val = examples(val_mask)

    spaces = tuple(SpaceSpec(tables[k][0], k, tables[k][1].dim, f"{sources[k].stage}/{sources[k].version}")
                   for k in ("movie", "user") if k in used)
    samples = {tables[k][0]: tables[k][1].matrix[:256] for k in ("movie", "user") if k in used}
    counts = {"train": len(train), "val": len(val), "heldout_available": int(heldout.sum()), "dropped": dropped}
    log.info("train: %d training examples, %d validation examples (of %d held-out), spaces %s",
             len(train), len(val), int(heldout.sum()), ", ".join(s.name for s in spaces))
    warm = tuple(warm_start_captions(synthesize, sources[k], kind=k, space=tables[k][0], vectors=tables[k][1])
                 for k in ("movie", "user") if cfg.warm_start and k in used)
    return TrainData(spaces, train, val, samples, counts, warm)


def warm_start_captions(synthesize: Artifact, source: Artifact, kind: str, space: str, vectors) -> dict:
    """Every training-split entity of ``kind`` with a vector in the space, and its caption (warm_start.py),
    from the ingest and splits artifacts synthesize was made from, found where the vectors' ``source``
    artifact lives. Held-out entities are left out."""
    from elm import vectors as vec
    from elm.lineage import home_store, read_tables
    from elm.synth.facts import _titles
    from elm.train.warm_start import POPULAR_POOL, movie_caption, user_captions

    found = resolve_lineage(synthesize, ["ingest", "splits"], store=home_store(source))
    table, key = ("movies", "movieId") if kind == "movie" else ("users", "userId")
    split = read_tables(found["splits"], (table,))[table].set_index(key)["split"]
    ids = vectors.ids[np.isin(vectors.ids, split.index[split == "train"])]
    if kind == "movie":
        movies = read_tables(found["ingest"], ("movies",))["movies"].set_index("movieId")
        ids = ids[np.isin(ids, movies.index)]
        captions = [movie_caption(y, g) for y, g in zip(movies.loc[ids, "year"], movies.loc[ids, "genres"])]
    else:  # the CF model's item factors live beside its user vectors
        t = read_tables(found["ingest"], ("ratings", "movies"))
        items = vec.read(source.file("movies.parquet"))
        popular = t["ratings"]["movieId"].value_counts().index[:POPULAR_POOL]
        pool = items.ids[np.isin(items.ids, popular)]
        captions = user_captions(vectors.get(ids), pool, items.get(pool), _titles(t["movies"]).to_dict())
    return {"space": space, "vectors": vectors.get(ids), "captions": captions}


def batch_indices(n: int, batch_size: int, seed: int, stage: int, micro_step: int,
                  rank: int = 0, world: int = 1, lengths=None, group: int = 1) -> np.ndarray:
    """Rows of one micro-step for one process: epochs are seeded permutations read in order.

    With ``lengths`` (one per row) and ``group`` > 1, every ``group`` consecutive batches of that stream
    are re-cut by length: their rows sorted, cut into batches again, and the batches taken in a seeded
    order. Each batch then pads to rows of about its own length, while the rows of a window stay the
    same as without grouping.

    A pure function of its arguments, so the data position is part of the step and resume is exact.
    """
    size = batch_size * world
    if lengths is None or group <= 1:
        return _stream(n, seed, stage, micro_step * size, size)[rank::world]
    window, j = divmod(micro_step, group)
    rows = _stream(n, seed, stage, window * group * size, group * size)
    rows = rows[np.argsort(np.asarray(lengths)[rows], kind="stable")]
    b = np.random.default_rng([seed, stage, window, 1]).permutation(group)[j]
    return rows[b * size:(b + 1) * size][rank::world]


def _stream(n: int, seed: int, stage: int, start: int, size: int) -> np.ndarray:
    """Rows at positions [start, start + size) of the stage's endless stream of seeded epoch permutations."""
    pos = np.arange(start, start + size)
    epoch = pos // n
    out = np.empty(size, dtype=np.int64)
    for e in np.unique(epoch):
        perm = np.random.default_rng([seed, stage, int(e)]).permutation(n)
        out[epoch == e] = perm[pos[epoch == e] % n]
    return out
