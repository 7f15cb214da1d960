"""Ask a trained ELM about vectors: the inference API behind ``elm describe``.

    d = Describer("artifacts/train/3f2a/elm")          # a saved ELM folder, a train version, None (latest) or an ELM
    d.describe("summary", movies=[1, 260])              # two answers: one per movie
    d.describe("interpolation", movies=[1], vectors=[v])   # one answer: movie 1 and a raw vector
    d.describe(prompt="What do <emb> and <emb> have in common?", movies=[1, 2])
    d.describe_many("summary", [1, 260, 0.5 * (a + b)])    # ids and vectors mixed, one answer each
    d.describe_many("similarities", [(1, 2), (260, v)])    # one tuple per answer for two-slot tasks

    answer.text                         the ELM's words
    answer.slots[0].nearest_title       the real movie closest to what was fed in ("Toy Story (1995)")
    answer.slots[0].nearest_cosine      1.0 for a movie's own vector; low for vectors far from the data
    answer.slots[0].outside             nearest_cosine is below what 95% of real entities have to a neighbour

Where vectors come from: each space the ELM reads (its ``SpaceSpec``) names its source artifact, e.g.
``semantic/3f2a...``; the movie ids are looked up in that artifact's ``movies.parquet`` (user ids in
``users.parquet``), and titles in the movies table of the ingest artifact that artifact was built from.
Explicit ``tables=`` override that (for vectors that live outside a store).

How inputs fill a prompt: a catalog task's prompt has one slot per ``task.slots`` entry; a free-form prompt
one per ``<emb>``. Inputs are taken in the order movie ids, user ids, raw vectors, and cut into groups of
as many as the prompt has slots: one answer per group. Far outside the data the text is unreliable
(docs/METHOD.md, "Known weaknesses"): every answer carries its inputs' nearest real entity and cosine so that
interpolations, CAV moves and random vectors are visibly out of distribution.

Generation is greedy by default with a ban on repeated 4-grams: small models loop without it (a repetition
penalty is available, off by default: it garbles numbers such as decades) (docs/METHOD.md, "Known weaknesses").
Movie slots are decoded with vector guidance (DEFAULT_GUIDANCE_SCALE): the text is pushed toward what this
movie's vector says and away from what the space's average movie would get. Batches go through
``ELM.generate`` (KV cache, left padding).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from elm import vectors as vec
from elm.artifacts import ArtifactError, ArtifactStore, open_store
from elm.model.elm import ELM
from elm.model.config import SpaceSpec
from elm.serve.answers import Answer, SlotReport
from elm.serve.decoding import (DEFAULT_GUIDANCE_SCALE, DEFAULT_NO_REPEAT_NGRAM_SIZE, DEFAULT_REPETITION_PENALTY,
                                check_guidance)
from elm.serve.errors import DescribeError
from elm.serve.inputs import as_id, as_vector_list, check_vector
from elm.serve.loading import TRAIN_STAGE, _movie_titles, load_elm, resolve_elm_folder
from elm.serve.spaces import SpaceTable
from elm.synth.catalog import EMB_TOKEN, Task, get_task, render_elm_prompt

log = logging.getLogger(__name__)

TABLE_FILES = {"movie": "movies.parquet", "user": "users.parquet"}
"""The vector table of a space, by kind, inside its source artifact (semantic/ or behavioral/)."""

FREE_PROMPT_MAX_NEW_TOKENS = 128
"""max_new_tokens of a free-form prompt (a task uses its own max_target_tokens)."""
_SOURCE = re.compile(r"^([a-z][a-z0-9_]*)/([^/\s]+)$")


@dataclass
class _Input:
    space: str
    entity_id: int | None
    vector: np.ndarray | None
    label: str


@dataclass
class _Gen:
    max_new_tokens: int | None = None
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    repetition_penalty: float = DEFAULT_REPETITION_PENALTY
    no_repeat_ngram_size: int = DEFAULT_NO_REPEAT_NGRAM_SIZE
    batch_size: int = 8
    seed: int | None = None
    guidance_scale: float | Mapping[str, float] | str | None = None
    """None: DEFAULT_GUIDANCE_SCALE, where the space's mean is known (unguided, with a warning, where not)."""
    extra: dict = field(default_factory=dict)


class Describer:
    """A loaded ELM plus the vector tables of its spaces: ids or raw vectors in, text and distances out.

    ``model``: a saved ELM folder, a train artifact folder, "train=VERSION" or a bare train version, None
    for the latest train artifact, or an ELM already in memory. ``store`` (default: $ELM_ARTIFACTS_DIR or
    ./artifacts) is where train versions, the spaces' source artifacts and a not-included base model are
    found. ``tables`` gives a space's vectors directly (space name -> elm.vectors.Vectors); ``titles``
    (movieId -> title) names movies of those. ``device``: where the ELM runs ("cuda", "cpu", "auto" = cuda
    when available; None leaves it where it is, CPU after loading).
    """

    def __init__(self, model: str | os.PathLike | ELM | None = None, store: ArtifactStore | None = None, *,
                 tables: Mapping[str, vec.Vectors] | None = None, titles: Mapping[int, str] | None = None,
                 device: str | None = None):
        if store is None:
            store = open_store()
        self.store = store
        if isinstance(model, ELM):
            self.elm, self.folder = model, None
        else:
            self.folder = resolve_elm_folder(model, store)
            self.elm = load_elm(self.folder, store)
        if device is not None:
            import torch

            self.elm.to(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
        self.spaces = {s.name: s for s in self.elm.config.spaces}
        tables = dict(tables or {})
        if unknown := sorted(set(tables) - set(self.spaces)):
            raise DescribeError(f"tables given for unknown space(s) {unknown}; this ELM reads {list(self.spaces)}")
        self._titles = dict(titles or {})
        self._tables: dict[str, SpaceTable | DescribeError] = {
            name: SpaceTable(self.spaces[name], v, "the vectors given to Describer", self._titles)
            for name, v in tables.items()}

    @classmethod
    def from_train(cls, store: ArtifactStore, version: str | None = None, **kw) -> Describer:
        """The ELM of a train artifact (latest when version is None)."""
        return cls(f"{TRAIN_STAGE}={version or ''}", store, **kw)

    # -- spaces and tables -------------------------------------------------------------------------

    def default_space(self, kind: str) -> str:
        """The first space of this kind in the ELM's config (e.g. semantic_movies before behavioral_movies)."""
        for s in self.elm.config.spaces:
            if s.kind == kind:
                return s.name
        raise DescribeError(f"this ELM reads no {kind} space (its spaces: "
                            f"{', '.join(f'{s.name} ({s.kind})' for s in self.spaces.values())})")

    def _space(self, name: str, what: str) -> SpaceSpec:
        if name not in self.spaces:
            raise DescribeError(f"{what}: unknown embedding space {name!r}; this ELM reads {', '.join(self.spaces)}")
        return self.spaces[name]

    def table(self, space: str) -> SpaceTable:
        """The real vectors of a space, from its SpaceSpec.source artifact (loaded once); raises if none."""
        t = self._table_or_error(space)
        if isinstance(t, DescribeError):
            raise t
        return t

    def _table_or_error(self, name: str) -> SpaceTable | DescribeError:
        if name not in self._tables:
            try:
                self._tables[name] = self._load_table(self._space(name, "table"))
            except DescribeError as e:
                self._tables[name] = e
        return self._tables[name]

    def _load_table(self, space: SpaceSpec) -> SpaceTable:
        m = _SOURCE.match(space.source or "")
        if m is None:
            raise DescribeError(f"space {space.name!r} has no vector table: its source {space.source!r} is not an "
                                f"artifact reference like 'semantic/<version>' (pass tables= to Describer)")
        stage, version = m.groups()
        try:
            art = self.store.resolve(stage, version)
            path = art.file(TABLE_FILES[space.kind])
            vectors = vec.read(path, expected_dim=space.dim)
        except (ArtifactError, vec.VectorError) as e:
            raise DescribeError(f"space {space.name!r} (source {space.source}): {e}") from e
        titles = self._titles or (_movie_titles(self.store, art.manifest.get("inputs", {}).get("ingest"))
                                  if space.kind == "movie" else {})
        return SpaceTable(space, vectors, f"{stage}/{art.version}/{path.name}", titles)

    # -- describing --------------------------------------------------------------------------------

    def describe(self, task: str | None = None, prompt: str | None = None, movies: Sequence[int] = (),
                 users: Sequence[int] = (), vectors: Sequence[np.ndarray] | np.ndarray | None = None, *,
                 movie_space: str | None = None, user_space: str | None = None,
                 vector_space: str | Sequence[str] | None = None, vectors_name: str = "vectors",
                 max_new_tokens: int | None = None, do_sample: bool = False, temperature: float = 1.0,
                 top_p: float = 1.0, repetition_penalty: float = DEFAULT_REPETITION_PENALTY,
                 no_repeat_ngram_size: int = DEFAULT_NO_REPEAT_NGRAM_SIZE, batch_size: int = 8,
                 seed: int | None = None, guidance_scale: float | Mapping[str, float] | str | None = None,
                 **generate_kwargs) -> list[Answer]:
        """Answers for a catalog ``task`` or a free-form ``prompt`` (one ``<emb>`` per slot).

        Inputs, in this order: ``movies`` (ids in ``movie_space``, default the ELM's first movie space),
        ``users`` (ids in ``user_space``), ``vectors`` (raw, [k, dim] or a list; read in ``vector_space``,
        default the space of the slot's kind for a task, else the ELM's first space). They are cut into
        groups of as many as the prompt has slots, one answer per group, in order. ``guidance_scale``: vector
        guidance, one number or {"movie": s, "user": s} (None: DEFAULT_GUIDANCE_SCALE; 1 = plain decoding).
        """
        text, t = self._prompt(task, prompt)
        k = text.count(EMB_TOKEN)
        inputs: list[_Input] = []
        if len(movies):
            ms = movie_space or self.default_space("movie")
            inputs += [_Input(ms, as_id(i, "movies"), None, f"movieId {i}") for i in movies]
        if len(users):
            us = user_space or self.default_space("user")
            inputs += [_Input(us, as_id(i, "users"), None, f"userId {i}") for i in users]
        raw = as_vector_list(vectors, vectors_name)
        if isinstance(vector_space, str) or vector_space is None:
            spaces = [vector_space] * len(raw)
        else:
            spaces = list(vector_space)
            if len(spaces) != len(raw):
                raise DescribeError(f"vector_space names {len(spaces)} space(s) for {len(raw)} vector(s)")
        for j, (v, sp) in enumerate(zip(raw, spaces)):
            if sp is None:
                pos = (len(inputs)) % k
                sp = self.default_space(t.slots[pos]) if t is not None else self.elm.config.spaces[0].name
            inputs.append(_Input(sp, None, v, f"{vectors_name}[{j}]"))
        if not inputs:
            raise DescribeError("nothing to describe: give movie ids, user ids or vectors")
        if len(inputs) % k:
            given = ", ".join(f"{n} {w}" for n, w in ((len(movies), "movie id(s)"), (len(users), "user id(s)"),
                                                        (len(raw), "vector(s)")) if n)
            raise DescribeError(f"the prompt has {k} {EMB_TOKEN} placeholder(s) but {len(inputs)} input(s) were "
                                f"given ({given}); give {k} per answer (a multiple of {k})")
        rows = [inputs[i:i + k] for i in range(0, len(inputs), k)]
        gen = _Gen(max_new_tokens, do_sample, temperature, top_p, repetition_penalty, no_repeat_ngram_size,
                   batch_size, seed, guidance_scale, generate_kwargs)
        return self._run([t] * len(rows), [text] * len(rows), rows, gen)

    def describe_many(self, task: str | None, items: Sequence[Any], *, prompt: str | None = None,
                      spaces: str | Sequence[str] | None = None, **settings) -> list[Answer]:
        """One answer per item, batched: an item is an id, a vector (array or list of floats), or for
        multi-slot prompts a tuple (or list) of those in slot order. Each slot is read in ``spaces`` (one
        name, or one per slot; default: the ELM's first space of the slot's kind for a task, else its first
        space). ``settings``: the generation keywords of describe."""
        text, t = self._prompt(task, prompt)
        rows = self._rows(text, t, items, spaces)
        return self._run([t] * len(rows), [text] * len(rows), rows, _gen(settings))

    def describe_requests(self, requests: Sequence[tuple[str, Any]], *, spaces: str | Sequence[str] | None = None,
                          **settings) -> list[Answer]:
        """One answer per (task, item) request, batched across tasks (``describe_many`` batches one task):
        the way to evaluate many tasks at once. max_new_tokens defaults to the largest task budget."""
        if not len(requests):
            raise DescribeError("nothing to describe: requests is empty")
        by_task: dict[str, list[int]] = {}
        for i, (task, _) in enumerate(requests):
            by_task.setdefault(task, []).append(i)
        tasks: list[Task | None] = [None] * len(requests)
        prompts, rows = [""] * len(requests), [None] * len(requests)
        for task, idx in by_task.items():
            text, t = self._prompt(task, None)
            for i, row in zip(idx, self._rows(text, t, [requests[i][1] for i in idx], spaces)):
                tasks[i], prompts[i], rows[i] = t, text, row
        return self._run(tasks, prompts, rows, _gen(settings))

    def _rows(self, text: str, t: Task | None, items: Sequence[Any],
              spaces: str | Sequence[str] | None) -> list[list[_Input]]:
        k = text.count(EMB_TOKEN)
        if isinstance(spaces, str) or spaces is None:
            slot_spaces = [spaces] * k
        else:
            slot_spaces = list(spaces)
            if len(slot_spaces) != k:
                raise DescribeError(f"spaces names {len(slot_spaces)} space(s) for {k} slot(s)")
        slot_spaces = [s or (self.default_space(t.slots[j]) if t is not None else self.elm.config.spaces[0].name)
                       for j, s in enumerate(slot_spaces)]
        if isinstance(items, np.ndarray) and items.ndim == 2 and k == 1:
            items = list(items)
        rows = []
        for i, item in enumerate(items):
            group = isinstance(item, tuple) or (k > 1 and isinstance(item, list))  # else an id or one vector
            parts = list(item) if group else [item]
            if len(parts) != k:
                raise DescribeError(f"items[{i}] holds {len(parts)} input(s) but the prompt has {k} {EMB_TOKEN} "
                                    f"placeholder(s)")
            row = []
            for j, x in enumerate(parts):
                sp = slot_spaces[j]
                if isinstance(x, (int, np.integer)):
                    id_name = "movieId" if self._space(sp, f"items[{i}]").kind == "movie" else "userId"
                    row.append(_Input(sp, int(x), None, f"{id_name} {int(x)}"))
                else:
                    row.append(_Input(sp, None, as_vector_list([x], f"items[{i}]")[0],
                                      f"items[{i}]" + (f"[{j}]" if k > 1 else "")))
            rows.append(row)
        if not rows:
            raise DescribeError("nothing to describe: items is empty")
        return rows

    # -- internals ---------------------------------------------------------------------------------

    def _prompt(self, task: str | None, prompt: str | None) -> tuple[str, Task | None]:
        if (task is None) == (prompt is None):
            raise DescribeError("give exactly one of task (a catalog task name) or prompt (free text with "
                                f"{EMB_TOKEN} placeholders)")
        if task is not None:
            t = get_task(task)  # UnknownTaskError lists the known tasks
            return render_elm_prompt(t), t
        if not isinstance(prompt, str) or EMB_TOKEN not in prompt:
            raise DescribeError(f"the prompt has no {EMB_TOKEN} placeholder: put one where each vector goes, e.g. "
                                f"'Describe the movie {EMB_TOKEN}.'")
        return prompt, None

    def _run(self, tasks: list[Task | None], prompts: list[str], rows: list[list[_Input]], gen: _Gen
             ) -> list[Answer]:
        # 1. every input's vector, checked (dimension, finiteness, kind), naming the input
        for task, row in zip(tasks, rows):
            for j, x in enumerate(row):
                space = self._space(x.space, x.label)
                if task is not None and task.slots[j] != space.kind:
                    raise DescribeError(f"{x.label}: slot {j} of task {task.name!r} takes a {task.slots[j]} vector "
                                        f"but space {space.name!r} holds {space.kind} vectors")
                if x.vector is not None:
                    check_vector(x.vector, space, x.label)
        by_space: dict[str, list[_Input]] = {}
        for x in (x for row in rows for x in row):
            by_space.setdefault(x.space, []).append(x)
        reports: dict[int, SlotReport] = {}
        for name, xs in by_space.items():
            ids = [x for x in xs if x.entity_id is not None]
            if ids:
                found = self.table(name).lookup([x.entity_id for x in ids])
                for x, v in zip(ids, found):
                    x.vector = v
            # 2. nearest real entity of each vector, one matrix product per space
            table = self._table_or_error(name)
            if isinstance(table, DescribeError):
                for x in xs:
                    reports[id(x)] = SlotReport(name, x.entity_id, None, None, None, None, x.label, None)
                continue
            nid, cos = table.nearest(np.stack([x.vector for x in xs]))
            ref = table.reference_cosine()
            for x, i, c in zip(xs, nid.tolist(), cos.tolist()):
                if not np.any(x.vector):  # every cosine is 0: "nearest" would name an arbitrary row
                    reports[id(x)] = SlotReport(name, x.entity_id, None, None, None, round(ref, 6), x.label,
                                                table.id_name, note="nearest undefined for a zero vector",
                                                norm=0.0, norm_range=table.norm_range)
                    continue
                reports[id(x)] = SlotReport(name, x.entity_id, int(i), table.titles.get(int(i)), round(float(c), 6),
                                            round(ref, 6), x.label, table.id_name,
                                            norm=float(np.linalg.norm(x.vector)), norm_range=table.norm_range)
        # 3. generation, batched
        max_new = gen.max_new_tokens or max(t.max_target_tokens if t is not None else FREE_PROMPT_MAX_NEW_TOKENS
                                            for t in tasks)
        if gen.seed is not None:
            import torch

            torch.manual_seed(gen.seed)
        scales = self._row_scales(rows, gen.guidance_scale)
        guidance = {}
        if any(g != 1.0 for g in scales):
            guided = {x.space for row, g in zip(rows, scales) if g != 1.0 for x in row}
            guidance = {"guidance_scale": scales, "null_vectors": {name: self._null_vector(name) for name in guided}}
        texts = self.elm.generate(
            prompts, [[(x.space, x.vector) for x in row] for row in rows],
            slots=[None if t is None else t.slots for t in tasks], max_new_tokens=max_new,
            do_sample=gen.do_sample, temperature=gen.temperature, top_p=gen.top_p,
            repetition_penalty=gen.repetition_penalty, batch_size=gen.batch_size, **guidance,
            **({"no_repeat_ngram_size": gen.no_repeat_ngram_size} if gen.no_repeat_ngram_size else {}),
            **gen.extra)
        return [Answer(text, [reports[id(x)] for x in row], prompt, t.name if t is not None else None)
                for text, row, prompt, t in zip(texts, rows, prompts, tasks)]

    def _row_scales(self, rows: list[list[_Input]], guidance: float | Mapping[str, float] | str | None
                    ) -> list[float]:
        """Each row's guidance scale: the smallest of its slots' kinds'. Asked for explicitly, guidance
        without a space's mean is an error (_null_vector); by default such rows are decoded plainly."""
        scales = check_guidance(DEFAULT_GUIDANCE_SCALE if guidance is None else guidance)
        out, unguided = [], set()
        for row in rows:
            g = min(scales[self.spaces[x.space].kind] for x in row)
            if g != 1.0 and guidance is None and (bad := {x.space for x in row
                                                          if self._null_vector(x.space, required=False) is None}):
                unguided |= bad
                g = 1.0
            out.append(g)
        if unguided:
            log.warning("decoding without vector guidance: space(s) %s have no vector table to take a mean from "
                        "(pass tables= to Describer for the default guided decoding)", ", ".join(sorted(unguided)))
        return out

    def _null_vector(self, space: str, required: bool = True) -> np.ndarray | None:
        """The space's mean vector, guidance's null input; None (or, if ``required``, an error) without one."""
        table = self._table_or_error(space)
        if (isinstance(table, DescribeError) or table.mean is None) and required:
            raise DescribeError(f"vector guidance needs space {space!r}'s real vectors (its mean is the null input) "
                                f"but {table if isinstance(table, DescribeError) else 'its table is empty'}; pass "
                                f"tables= to Describer or guidance_scale=1")
        return None if isinstance(table, DescribeError) else table.mean


def _gen(settings: dict) -> _Gen:
    known = {f for f in _Gen.__dataclass_fields__ if f != "extra"}
    return _Gen(**{k: v for k, v in settings.items() if k in known},
                extra={k: v for k, v in settings.items() if k not in known})


__all__ = ["DEFAULT_GUIDANCE_SCALE", "DEFAULT_NO_REPEAT_NGRAM_SIZE", "DEFAULT_REPETITION_PENALTY", "DescribeError",
           "Describer", "check_guidance"]
