"""What the explore page shows without the model: each movie space's map, titles, genres, held-out flags, the
teacher's and the baseline's texts, users and their top-rated movies, the concepts (CAV attributes) evaluated.

Nothing here imports torch (the map is served while the model and torch still load in the background), so the
ELM's spaces are read from its saved config as plain records. Everything comes from the store through the ELM's lineage: its spaces name their vector artifacts, those name
their ingest artifact; the splits come from the train artifact's lineage (or the latest splits of that ingest),
the texts from the newest evaluation of that train version and from the synthesized task data.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from elm.artifacts import Artifact, ArtifactError, ArtifactStore
from elm.embed.splits import HELDOUT
from elm.explore.projection import Projection, projection_of
from elm.lineage import read_tables, resolve_lineage

CONFIG_FILE = "elm_config.json"
"""elm.model.elm.CONFIG_FILE (not imported from there: that module imports torch; a test checks they agree)."""
MODEL_DIR = "elm"
"""Where a train artifact keeps its final ELM (elm.serve.loading.TRAIN_ELM_DIR; a test checks they agree)."""

PALETTE_GENRES = 12
"""Movies are coloured by one of the catalog's 12 most frequent genres: the rarest of their own among those
(the most distinctive: "Animation" over "Comedy"), "Other" when they have none of them."""
TOP_RATED = 10


class ExploreError(ValueError):
    """A request the explorer cannot serve; the message says what is wrong and what to do."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Lineage:
    ingest: Artifact
    splits: Artifact | None
    evaluate: Artifact | None
    synthesize: Artifact | None


@dataclass(frozen=True)
class Space:
    """An embedding space the ELM reads (the fields of elm.model.config.SpaceSpec the page needs)."""

    name: str
    kind: str
    dim: int
    source: str


def find_model(store: ArtifactStore, model: str | os.PathLike | None) -> tuple[Path, Artifact | None]:
    """The saved ELM folder meant by ``model`` and its train artifact: None = the latest train artifact, a train
    version (a prefix is enough), or a folder (a saved ELM or a train artifact). elm.serve.loading resolves the
    same names for the CLI; this one reads no weights."""
    if model is None or (isinstance(model, str) and not Path(model).exists() and os.sep not in model):
        name = None if model is None else str(model).removeprefix("train=")
        if name is None:
            train = store.latest("train")
            if train is None:
                raise ExploreError(f"no train artifact in {store.root}: run `make run` first (or pass --train)", 503)
        else:
            train = store.get("train", name) or next(
                (a for a in store.versions("train") if a.version.startswith(name)), None)
            if train is None:
                raise ExploreError(f"no train artifact version matching {name!r} in {store.root}; list them with "
                                   "`elm artifacts train`", 404)
        return train.path / MODEL_DIR, train
    path = Path(model)
    if not path.is_dir():
        raise ExploreError(f"no saved ELM at {path} (no such folder)", 404)
    if not (path / CONFIG_FILE).exists() and (path / MODEL_DIR / CONFIG_FILE).exists():
        path = path / MODEL_DIR
    if not (path / CONFIG_FILE).exists():
        raise ExploreError(f"{path} is not a saved ELM: it has no {CONFIG_FILE}", 404)
    train = next((a for a in store.versions("train") if path.resolve().parent == a.path.resolve()), None)
    return path, train


def read_spaces(folder: Path) -> tuple[Space, ...]:
    """The ELM's spaces from its saved config, without loading any weights (the map must not wait for them)."""
    spaces = json.loads((folder / CONFIG_FILE).read_text())["config"]["spaces"]
    return tuple(Space(s["name"], s["kind"], int(s["dim"]), s.get("source") or "") for s in spaces)


def find_lineage(store: ArtifactStore, spaces: tuple[Space, ...], train: Artifact | None) -> Lineage:
    source = store.resolve(*spaces[0].source.split("/", 1))
    ingest = store.resolve("ingest", source.manifest["inputs"]["ingest"])
    splits = synthesize = evaluate = None
    if train is not None:
        try:
            found = resolve_lineage(train, ["synthesize", "splits"], store=store)
            splits, synthesize = found["splits"], found["synthesize"]
        except ArtifactError:
            pass
        done = [a for a in store.versions("evaluate") if a.manifest.get("inputs", {}).get("train") == train.version]
        evaluate = max(done, key=lambda a: a.manifest["created_at"], default=None)
    if splits is None:
        same = [a for a in store.versions("splits") if a.manifest.get("inputs", {}).get("ingest") == ingest.version]
        splits = max(same, key=lambda a: a.manifest["created_at"], default=None)
    return Lineage(ingest, splits, evaluate, synthesize)


class Catalog:
    """The page's data for one ELM: maps per movie space, movie and user details, texts, concepts."""

    def __init__(self, store: ArtifactStore, spaces: tuple[Space, ...], train: Artifact | None = None):
        self.store, self.space_list = store, spaces
        self.spaces = {s.name: s for s in spaces}
        self.lineage = find_lineage(store, spaces, train)
        t = read_tables(self.lineage.ingest, ("movies", "ratings"))
        movies = t["movies"]
        self.ratings = t["ratings"]
        counts = movies["genres"].explode().value_counts()
        palette = [g for g in counts.index if g != "(no genres listed)"][:PALETTE_GENRES]
        rank = {g: i for i, g in enumerate(palette)}
        self.genre_names = palette + ["Other"]
        main = movies["genres"].map(lambda gs: max((g for g in gs if g in rank), key=rank.get, default="Other"))
        self.movies = pd.DataFrame({"title": movies["title"].to_numpy(), "year": movies["year"].to_numpy(),
                                    "genres": movies["genres"].map(list).to_numpy(), "main": main.to_numpy()},
                                   index=movies["movieId"].to_numpy(np.int64))
        self.heldout = {"movie": set(), "user": set()}
        if self.lineage.splits is not None:
            for kind, table in (("movie", "movies"), ("user", "users")):
                s = read_tables(self.lineage.splits, (table,))[table]
                self.heldout[kind] = set(s.iloc[s["split"].to_numpy() == HELDOUT, 0].astype(np.int64))
        self._projections: dict[str, Projection] = {}
        self._maps: dict[str, dict] = {}
        self._texts: pd.DataFrame | None = None

    # -- spaces and maps ---------------------------------------------------------------------------

    def space(self, name: str | None, kind: str) -> Space:
        if name is None:
            name = next((s.name for s in self.space_list if s.kind == kind), None)
            if name is None:
                raise ExploreError(f"this ELM reads no {kind} space (its spaces: {', '.join(self.spaces)})")
        if name not in self.spaces or self.spaces[name].kind != kind:
            known = [s.name for s in self.space_list if s.kind == kind]
            raise ExploreError(f"unknown {kind} space {name!r}; this ELM reads {', '.join(known) or 'none'}", 404)
        return self.spaces[name]

    def projection(self, space: str) -> Projection:
        if space not in self._projections:
            spec = self.space(space, "movie")
            self._projections[space] = projection_of(self.store, self.store.resolve(*spec.source.split("/", 1)))
        return self._projections[space]

    def map(self, space: str) -> dict:
        """Columnar JSON of every movie of the space: ids, x, y, title, year, genre index, held-out flag."""
        if space not in self._maps:
            p = self.projection(space)
            m = self.movies.reindex(p.ids)
            self._maps[space] = {
                "space": space, "projection": f"{p.artifact.stage}/{p.artifact.version}",
                "explained": [round(e, 4) for e in p.explained], "genres": self.genre_names,
                "id": p.ids.tolist(), "x": np.round(p.xy[:, 0], 4).tolist(), "y": np.round(p.xy[:, 1], 4).tolist(),
                "title": m["title"].fillna("").tolist(),
                "genres_all": m["genres"].map(lambda g: "|".join(g) if isinstance(g, list) else "").tolist(),
                "genre": m["main"].map({g: i for i, g in enumerate(self.genre_names)}).fillna(
                    len(self.genre_names) - 1).astype(int).tolist(),
                "heldout": [int(i) in self.heldout["movie"] for i in p.ids]}
        return self._maps[space]

    # -- movies and users --------------------------------------------------------------------------

    def movie(self, movie_id: int) -> dict:
        if movie_id not in self.movies.index:
            raise ExploreError(f"unknown movieId {movie_id}: not in ingest/{self.lineage.ingest.version}", 404)
        m = self.movies.loc[movie_id]
        texts = self.texts()
        rows = texts[texts["entity_id"] == movie_id]
        return {"id": movie_id, "title": m["title"], "year": None if pd.isna(m["year"]) else int(m["year"]),
                "genres": list(m["genres"]), "heldout": movie_id in self.heldout["movie"],
                "texts": {task: {src: text for src, text in zip(g["source"], g["text"])}
                          for task, g in rows.groupby("task")}}

    def texts(self) -> pd.DataFrame:
        """(entity_id, task, source in {teacher, baseline}, text) of single-movie rows: the evaluation's
        teacher and baseline texts, and the synthesized targets (teacher) of movies it did not evaluate."""
        if self._texts is None:
            parts = []
            if (ev := self.lineage.evaluate) is not None:
                g = read_tables(ev, ("generations",))["generations"]
                g = g[(g["experiment"] == "generalisation") & (g["entity_kind"] == "movie")
                      & g["system"].isin(["truth", "baseline"]) & g["partner_id"].isna()]
                parts.append(pd.DataFrame({"entity_id": g["entity_id"], "task": g["task"],
                                           "source": g["system"].map({"truth": "teacher", "baseline": "baseline"}),
                                           "text": g["output"]}))
            if (sy := self.lineage.synthesize) is not None:
                e = read_tables(sy, ("examples",))["examples"]
                e = e[(e["kind"] == "movie") & e["partner_id"].isna()]
                parts.append(pd.DataFrame({"entity_id": e["entity_id"], "task": e["task"], "source": "teacher",
                                           "text": e["target"]}))
            cols = ["entity_id", "task", "source", "text"]
            self._texts = (pd.concat(parts, ignore_index=True).drop_duplicates(["entity_id", "task", "source"])
                           if parts else pd.DataFrame(columns=cols))
            self._texts["entity_id"] = self._texts["entity_id"].astype(np.int64)
        return self._texts

    def users(self, ids: np.ndarray) -> list[dict]:
        return [{"id": int(u), "heldout": int(u) in self.heldout["user"]} for u in np.sort(ids)]

    def user(self, user_id: int) -> dict:
        r = self.ratings[self.ratings["userId"] == user_id]
        if r.empty:
            raise ExploreError(f"unknown userId {user_id}: no ratings in ingest/{self.lineage.ingest.version}", 404)
        top = r.sort_values(["rating", "timestamp"] if "timestamp" in r else ["rating"], ascending=False)[:TOP_RATED]
        return {"id": user_id, "heldout": user_id in self.heldout["user"], "ratings": len(r),
                "top": [{"id": int(m), "title": self.movies["title"].get(int(m), ""), "rating": float(x)}
                        for m, x in zip(top["movieId"], top["rating"])]}

    def attributes(self, space: str) -> list[str]:
        """The soft attributes the evaluation fitted a CAV for in this space (genre:..., tag:...), then the
        map's genres (so a store without an evaluation still has concepts to move along)."""
        found = []
        if (ev := self.lineage.evaluate) is not None and (ev.path / "cav_classifiers.parquet").exists():
            c = read_tables(ev, ("cav_classifiers",))["cav_classifiers"]
            found = sorted(c.loc[c["space"] == space, "attribute"].unique())
        return found + [f"genre:{g}" for g in self.genre_names[:-1] if f"genre:{g}" not in found]


__all__ = ["Catalog", "ExploreError", "Space", "find_lineage", "find_model", "read_spaces"]
