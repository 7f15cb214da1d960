"""The experiments' parts: each generates texts for one slice of an evaluation and scores them (scoring.py).

    generalisation_part       the ELM's text and the teacher's on held-out (or training) entities of every task,
                              plus the profile control a text naming popular films gives (popular_control) and
                              the movie control a text of only the decade and genres gives (facts_control)
    baseline_part             the text-only baseline on the same held-out movie rows
    interpolation_*_part      movie and user pairs mixed at weights a (interpolation.py)
    cav_part                  entities moved along an attribute's CAVs (cav.py), fitted by fit_attribute_cavs
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from elm.embed.splits import HELDOUT, TRAIN, hash_order
from elm.evaluate.baseline import OneShot, blend_prompt, one_shot_prompt
from elm.evaluate.cav import CAV, fit_cav, movie_labels, parse_attribute, user_labels
from elm.evaluate.config import PROFILE_TASK, SUMMARY_TASK
from elm.evaluate.context import Context
from elm.evaluate.interpolation import lerp, movie_pairs, user_pairs
from elm.evaluate.scoring import GEN_COLUMNS, frame, movie_targets, names_of, score_texts
from elm.metrics.behavioral_consistency import movie_relevance, user_relevance
from elm.synth.catalog import get_task

# -----------------------------------------------------------------------------
# 1. generalisation


def pick_rows(ctx: Context, split: str, task: str, n: int) -> pd.DataFrame:
    ex = ctx.examples
    rows = ex[(ex["split"] == split) & (ex["task"] == task)].drop_duplicates(["entity_id", "partner_id"])
    if rows.empty or n == 0:
        return rows.iloc[:0]
    return shuffled(rows, ctx.cfg.seed, salt=len(task)).head(n).reset_index(drop=True)


def shuffled(rows: pd.DataFrame, seed: int, salt: int) -> pd.DataFrame:
    """rows in the seeded hash order of their entity_id (stable when the artifact grows)."""
    order = hash_order(rows["entity_id"].unique(), seed, salt)
    rank = pd.Series(np.arange(len(order)), index=order)
    return rows.iloc[np.argsort(rank[rows["entity_id"].to_numpy()].to_numpy(), kind="stable")]


def _budget(ctx: Context, task: str) -> int:
    own = get_task(task).max_target_tokens
    return min(own, ctx.cfg.max_new_tokens) if ctx.cfg.max_new_tokens else own


def _decoding(ctx: Context) -> dict:
    """How every part has the ELM decode: the config's batch size and vector guidance."""
    return {"batch_size": ctx.cfg.batch_size, "guidance_scale": ctx.cfg.guidance_scale}


def one_shot_example(ctx: Context, task: str) -> OneShot | None:
    """A training movie's titles and teacher target for this task (the baseline's worked example)."""
    ex = ctx.examples
    rows = ex[(ex["split"] == TRAIN) & (ex["task"] == task)]
    if rows.empty:
        return None
    r = shuffled(rows, ctx.cfg.seed, salt=7).iloc[0]
    titles = [ctx.titles.get(int(r["entity_id"]), "")]
    if pd.notna(r["partner_id"]):
        titles.append(ctx.titles.get(int(r["partner_id"]), ""))
    return OneShot(tuple(titles), str(r["target"]))


def generalisation_rows(ctx: Context, split: str, tasks: Sequence[str], per_task: int | None = None) -> pd.DataFrame:
    """The examples scored for ``split``: up to heldout_per_task (heldout_users for profiles; train_per_task
    on the training split; ``per_task`` when given) entities per task. The order is fixed per task, so a
    smaller count takes the first rows of a larger one."""
    cfg = ctx.cfg

    def n(task: str) -> int:
        if per_task is not None:
            return per_task
        if split != HELDOUT:
            return cfg.train_per_task
        return cfg.heldout_users if task == PROFILE_TASK else cfg.heldout_per_task
    frames = [pick_rows(ctx, split, t, n(t)) for t in tasks]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else ctx.examples.iloc[:0]


def _titles_of(ctx: Context, row) -> list[str]:
    return [ctx.titles.get(int(row.entity_id), "")] + ([ctx.titles.get(int(row.partner_id), "")]
                                                       if pd.notna(row.partner_id) else [])


def score_by_task(ctx: Context, rows: pd.DataFrame, texts: Sequence[str], base: dict, **columns) -> pd.DataFrame:
    """Generalisation rows scored task by task (the random reference pairs entities of the same task)."""
    rows = rows.reset_index(drop=True).assign(_text=list(texts))
    for k, v in columns.items():
        rows[f"_{k}"] = v
    parts = []
    for task, d in rows.groupby("task", sort=False):
        kind = "user" if task == PROFILE_TASK else "movie"
        ids = d["entity_id"].astype("int64").tolist()
        avoid = None  # a profile may name the movies a user rated: they are other entities
        if kind == "movie":
            sc_vec, rel = movie_targets(ctx, ids, d["partner_id"].tolist())
            avoid = [names_of(ctx, [e, p]) for e, p in zip(ids, d["partner_id"].tolist())]
        else:
            sc_vec, rel = None, user_relevance(ctx.users.get(ids), ctx.cand_factors)
        scores = score_texts(ctx, d["_text"].tolist(), sc_vec, rel, ctx.cfg.seed, avoid)
        parts.append(frame(ctx, base | {"experiment": "generalisation", "task": task, "entity_kind": kind},
                           d["_text"].tolist(), scores, entity_id=ids, partner_id=d["partner_id"].tolist(),
                           title=d["title"].fillna("").tolist(), **{k: d[f"_{k}"].tolist() for k in columns}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=GEN_COLUMNS)


def generalisation_part(ctx: Context, split: str, tasks: Sequence[str]) -> pd.DataFrame:
    """The ELM's text and the teacher's for every selected task and entity of ``split``, batched across tasks."""
    rows = generalisation_rows(ctx, split, tasks)
    if rows.empty:
        return pd.DataFrame(columns=GEN_COLUMNS)
    requests = [(r.task, (int(r.entity_id), int(r.partner_id)) if pd.notna(r.partner_id) else int(r.entity_id))
                for r in rows.itertuples()]
    answers = ctx.describer.describe_requests(requests, max_new_tokens=ctx.cfg.max_new_tokens, **_decoding(ctx))
    base = {"split": split}
    profiles = rows[rows["task"] == PROFILE_TASK]
    movies = rows[rows["task"] != PROFILE_TASK]
    return pd.concat([
        score_by_task(ctx, rows, [a.text for a in answers], base | {"system": "elm"},
                      prompt=[a.prompt for a in answers], space=[a.slots[0].space for a in answers],
                      nearest_cosine=[a.slots[0].nearest_cosine for a in answers]),
        score_by_task(ctx, rows, rows["target"].tolist(), base | {"system": "truth", "prompt": "", "space": ""}),
        *([popular_control(ctx, profiles)] if split == HELDOUT and len(profiles) else []),
        *([facts_control(ctx, movies)] if split == HELDOUT and len(movies) else []),
    ], ignore_index=True)


def popular_profile(ctx: Context, n: int = 3) -> str:
    """A profile that ignores its user: the n films training-split users most often rated 4 or more."""
    r = ctx.ratings
    train_users = ctx.user_split.index[ctx.user_split == TRAIN]
    liked = r[(r["rating"] >= 4) & r["userId"].isin(train_users)]["movieId"].value_counts()
    top = [ctx.titles[m] for m in liked.index if m in ctx.titles][:n]
    return f"Favourites include {', '.join(top[:-1])} and {top[-1]}." if len(top) > 1 else \
        f"Favourites include {''.join(top)}."


def popular_control(ctx: Context, profiles: pd.DataFrame) -> pd.DataFrame:
    """BC rewards naming films most users like: this control, one text for every held-out user, shows how
    much of a profile's BC needs no vector at all (experiment "control", system "popular")."""
    d = score_by_task(ctx, profiles, [popular_profile(ctx)] * len(profiles),
                      {"split": HELDOUT, "system": "popular", "prompt": "", "space": ""})
    return d.assign(experiment="control")


def facts_control(ctx: Context, rows: pd.DataFrame) -> pd.DataFrame:
    """What reading the decade and genres perfectly buys, and no more: the template teacher's text for each
    held-out movie row written from the movie's year and genres alone (no user tags, no title). The teacher's
    targets also quote user tags, which a vector of the embedded default barely carries, so this system's
    specificity is the most an ELM that states decade and genres can reach (experiment "control", system
    "facts"). A row whose movie has neither gets an empty text."""
    from elm.synth.facts import movie_facts
    from elm.synth.teachers.template import TemplateTeacher

    facts = movie_facts(ctx.movies).set_index("movieId", drop=False)
    teacher = TemplateTeacher()

    def text(r) -> str:
        partner = facts.loc[int(r.partner_id)].to_dict() if pd.notna(r.partner_id) else None
        try:
            return teacher.generate(get_task(r.task), facts.loc[int(r.entity_id)].to_dict(), partner)
        except ValueError:  # no year and no genre: nothing to state
            return ""
    d = score_by_task(ctx, rows, [text(r) for r in rows.itertuples()],
                      {"split": HELDOUT, "system": "facts", "prompt": "", "space": ""})
    return d.assign(experiment="control")


def baseline_part(ctx: Context, tasks: Sequence[str]) -> pd.DataFrame:
    """The text-only baseline on the same held-out movie rows as the ELM: titles and a one-shot example."""
    rows = generalisation_rows(ctx, HELDOUT, [t for t in tasks if t != PROFILE_TASK],
                               per_task=min(ctx.cfg.baseline_per_task, ctx.cfg.heldout_per_task))
    if rows.empty:
        return pd.DataFrame(columns=GEN_COLUMNS)
    shots = {t: one_shot_example(ctx, t) for t in rows["task"].unique()}
    prompts = [one_shot_prompt(get_task(r.task), _titles_of(ctx, r), shots[r.task]) for r in rows.itertuples()]
    texts = ctx.baseline().complete(prompts, [_budget(ctx, t) for t in rows["task"]])
    return score_by_task(ctx, rows, texts, {"split": HELDOUT, "system": "baseline", "space": "title"},
                         prompt=prompts)


# -----------------------------------------------------------------------------
# 2. interpolation


def interpolation_movie_part(ctx: Context) -> pd.DataFrame:
    """Every pair at every a, generated in one batched call per system, then scored pair by pair."""
    cfg = ctx.cfg
    space_vecs = ctx.movie_space_vectors()
    pool = np.intersect1d(space_vecs.ids, ctx.semantic.ids)
    pairs = movie_pairs(ctx.movies, ctx.ratings, cfg.interpolation_anchor, cfg.movie_pairs, pool)
    if not pairs:
        return pd.DataFrame(columns=GEN_COLUMNS)
    alphas = np.array(cfg.alphas, dtype=np.float32)
    k = len(alphas)

    def mixed(vectors, a_id, b_id):
        return lerp(np.repeat(vectors.get([a_id]), k, 0), np.repeat(vectors.get([b_id]), k, 0), alphas)
    fed = np.concatenate([mixed(space_vecs, a, b) for a, b in pairs])
    answers = ctx.describer.describe_many(SUMMARY_TASK, list(fed), spaces=ctx.movie_space,
                                          max_new_tokens=_budget(ctx, SUMMARY_TASK), **_decoding(ctx))
    titles = [(ctx.titles.get(a, str(a)), ctx.titles.get(b, str(b))) for a, b in pairs]
    baseline = []
    if cfg.baseline:
        prompts = [blend_prompt(ta, tb, float(x)) for ta, tb in titles for x in alphas]
        baseline = ctx.baseline().complete(prompts, [_budget(ctx, SUMMARY_TASK)] * len(prompts))
    parts = []
    for p, ((a_id, b_id), (ta, tb)) in enumerate(zip(pairs, titles)):
        rows = slice(p * k, (p + 1) * k)
        sc_vec = mixed(ctx.semantic, a_id, b_id)
        avoid = [names_of(ctx, [a_id, b_id])] * k
        base = dict(experiment="interpolation", split="", task=SUMMARY_TASK, entity_kind="movie", entity_id=a_id,
                    partner_id=b_id, title=f"{ta} + {tb}")
        texts = [x.text for x in answers[rows]]
        parts.append(frame(ctx, base | {"system": "elm", "space": ctx.movie_space, "prompt": answers[rows][0].prompt},
                           texts, score_texts(ctx, texts, sc_vec, None, cfg.seed, avoid), alpha=alphas.astype(float),
                           nearest_cosine=[x.slots[0].nearest_cosine for x in answers[rows]]))
        if baseline:
            texts = baseline[rows]
            parts.append(frame(ctx, base | {"system": "baseline", "space": "title"}, texts,
                               score_texts(ctx, texts, sc_vec, None, cfg.seed, avoid), alpha=alphas.astype(float),
                               prompt=prompts[rows]))
    return pd.concat(parts, ignore_index=True)


def heldout_users(ctx: Context) -> list[int]:
    ids = ctx.users.ids[np.isin(ctx.users.ids, ctx.user_split.index[ctx.user_split == HELDOUT])]
    return [int(u) for u in hash_order(ids, ctx.cfg.seed, salt=11)]


def interpolation_user_part(ctx: Context) -> pd.DataFrame:
    cfg, space = ctx.cfg, ctx.user_space()
    pairs = user_pairs(heldout_users(ctx), cfg.user_pairs) if space is not None else []
    if not pairs:
        return pd.DataFrame(columns=GEN_COLUMNS)
    alphas = np.array(cfg.alphas, dtype=np.float32)
    k = len(alphas)
    fed = np.concatenate([lerp(np.repeat(ctx.users.get([a]), k, 0), np.repeat(ctx.users.get([b]), k, 0), alphas)
                          for a, b in pairs])
    answers = ctx.describer.describe_many(PROFILE_TASK, list(fed), spaces=space,
                                          max_new_tokens=_budget(ctx, PROFILE_TASK), **_decoding(ctx))
    parts = []
    for p, (a_id, b_id) in enumerate(pairs):
        rows = slice(p * k, (p + 1) * k)
        texts = [x.text for x in answers[rows]]
        rel = user_relevance(fed[rows], ctx.cand_factors)
        base = dict(experiment="interpolation", system="elm", split=HELDOUT, task=PROFILE_TASK, entity_kind="user",
                    entity_id=a_id, partner_id=b_id, title=f"user {a_id} + user {b_id}", space=space,
                    prompt=answers[rows][0].prompt)
        parts.append(frame(ctx, base, texts, score_texts(ctx, texts, None, rel, cfg.seed),
                           alpha=alphas.astype(float), nearest_cosine=[x.slots[0].nearest_cosine for x in answers[rows]]))
    return pd.concat(parts, ignore_index=True)


# -----------------------------------------------------------------------------
# 3. CAV extrapolation


def fit_cavs(ctx: Context) -> tuple[dict[str, dict[str, CAV]], pd.DataFrame]:
    """Every attribute's CAVs (fit_attribute_cavs); fitted before anything is generated, so an attribute with
    too few examples fails fast."""
    out = {parse_attribute(key).key: fit_attribute_cavs(ctx, key) for key in ctx.cfg.cav_attributes}
    rows = [c.to_row() for cavs in out.values() for c in {id(c): c for c in cavs.values()}.values()]
    return out, pd.DataFrame(rows, columns=list(CAV.ROW_COLUMNS))


def fit_attribute_cavs(ctx: Context, key: str) -> dict[str, CAV]:
    """One attribute's CAV in the semantic space (the text scorer), the ELM's movie space and the user space.
    Seeded, so a part run elsewhere (run_part) refits the very CAVs the classifier table reports."""
    cfg = ctx.cfg
    attr = parse_attribute(key)
    heldout_m = ctx.movie_split.index[ctx.movie_split == HELDOUT]
    labels = movie_labels(attr, ctx.movies, ctx.tags, *ctx.genome)
    cavs = {"text": fit_cav(ctx.semantic, labels, heldout_m, attribute=attr.key, space="semantic_movies",
                            min_positives=cfg.cav_min_positives, seed=cfg.seed)}
    if cfg.cav_movies:
        cavs["movie"] = cavs["text"] if ctx.movie_space_is_semantic() else fit_cav(
            ctx.movie_space_vectors(), labels, heldout_m, attribute=attr.key, space=ctx.movie_space,
            min_positives=cfg.cav_min_positives, seed=cfg.seed)
    if cfg.cav_users and ctx.user_space() is not None:
        heldout_u = ctx.user_split.index[ctx.user_split == HELDOUT]
        cavs["user"] = fit_cav(ctx.users, user_labels(attr, ctx.ratings, labels), heldout_u, attribute=attr.key,
                               space=ctx.user_space(), min_positives=cfg.cav_min_positives, seed=cfg.seed)
    return cavs


def cav_part(ctx: Context, key: str, cavs: dict[str, CAV]) -> pd.DataFrame:
    """Entities without the attribute moved along its CAV; every movie (user) in one batched call."""
    cfg = ctx.cfg
    alphas = np.array(cfg.cav_alphas, dtype=np.float32)
    k = len(alphas)
    text_cav = cavs["text"]
    labels = movie_labels(parse_attribute(key), ctx.movies, ctx.tags, *ctx.genome)
    parts = []
    if "movie" in cavs:
        space_vecs = ctx.movie_space_vectors()
        ex = ctx.examples
        pool = ex.loc[(ex["split"] == HELDOUT) & (ex["kind"] == "movie"), "entity_id"].drop_duplicates().to_numpy()
        pool = pool[np.isin(pool, space_vecs.ids)]
        neg = pool[~labels.reindex(pool).fillna(False).to_numpy(bool)]
        chosen = [int(m) for m in hash_order(neg, cfg.seed, salt=13)[:cfg.cav_movies]]
        moved = [cavs["movie"].move(np.repeat(space_vecs.get([m]), k, 0), alphas) for m in chosen]
        answers = ctx.describer.describe_many(SUMMARY_TASK, [v for m in moved for v in m], spaces=ctx.movie_space,
                                              max_new_tokens=_budget(ctx, SUMMARY_TASK),
                                              **_decoding(ctx)) if chosen else []
        for j, m in enumerate(chosen):
            mine = answers[j * k:(j + 1) * k]
            texts = [x.text for x in mine]
            if ctx.movie_space_is_semantic():
                sc_vec, rel = moved[j], None
            else:
                sc_vec, rel = None, movie_relevance(moved[j], ctx.cand_factors)
            s = score_texts(ctx, texts, sc_vec, rel, cfg.seed, [names_of(ctx, [m])] * k)
            base = dict(experiment="cav", system="elm", split=HELDOUT, task=SUMMARY_TASK, entity_kind="movie",
                        entity_id=m, title=ctx.titles.get(m, ""), attribute=key, space=ctx.movie_space,
                        prompt=mine[0].prompt)
            parts.append(frame(ctx, base, texts, s, alpha=alphas.astype(float),
                               attribute_score=text_cav.probability(s["encoded"]),
                               nearest_cosine=[x.slots[0].nearest_cosine for x in mine]))
    if "user" in cavs:
        ul = user_labels(parse_attribute(key), ctx.ratings, labels)
        users = [u for u in heldout_users(ctx) if not bool(ul.get(u, False))][:cfg.cav_users]
        space = ctx.user_space()
        moved = [cavs["user"].move(np.repeat(ctx.users.get([u]), k, 0), alphas) for u in users]
        answers = ctx.describer.describe_many(PROFILE_TASK, [v for m in moved for v in m], spaces=space,
                                              max_new_tokens=_budget(ctx, PROFILE_TASK),
                                              **_decoding(ctx)) if users else []
        for j, u in enumerate(users):
            mine = answers[j * k:(j + 1) * k]
            texts = [x.text for x in mine]
            s = score_texts(ctx, texts, None, user_relevance(moved[j], ctx.cand_factors), cfg.seed)
            base = dict(experiment="cav", system="elm", split=HELDOUT, task=PROFILE_TASK, entity_kind="user",
                        entity_id=u, title=f"user {u}", attribute=key, space=space, prompt=mine[0].prompt)
            parts.append(frame(ctx, base, texts, s, alpha=alphas.astype(float),
                               attribute_score=text_cav.probability(s["encoded"]),
                               nearest_cosine=[x.slots[0].nearest_cosine for x in mine]))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=GEN_COLUMNS)
