"""The evaluate stage (elm/evaluate/stage.py) and `elm evaluate` / `elm report`, on real ml-latest-small vectors.

The ELM is a tiny random one published as a train artifact: its words mean nothing, so what is tested is what
evaluation promises whatever the model: scores equal their definitions, references are measured the same way,
the endpoints of an interpolation are the entities' own vectors, nothing is published on bad input, and an
interrupted run resumes.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from elm.evaluate import parts
from elm.artifacts import ArtifactStore
from elm.evaluate.cav import CAVError
from elm.cli import app
from elm.model.elm import ELM
from elm.model.config import ELMConfig, SpaceSpec
from elm.evaluate.config import EvalConfig, EvaluationError
from elm.evaluate.context import load_context, resolve_inputs
from elm.evaluate.controls import controls, endpoint_controls, verdict
from elm.evaluate.experiments import facts_control, generalisation_rows, popular_control, score_by_task
from elm.evaluate.scoring import GEN_COLUMNS, movie_targets, names_of, score_texts
from elm.evaluate.stage import PARTS, evaluate
from elm.evaluate.tables import aggregate_scores
from elm.evaluate.interpolation import lerp, movie_pairs
from elm.report.intervals import per_task_intervals
from elm.report.stage import build_report, headline_text
from elm.synth.checks import title_words
from elm.metrics.semantic_consistency import normalised
from elm.embed.splits import HELDOUT
from elm.synth.config import SynthesisConfig
from elm.synth.stage import synthesize

TASKS = ("summary", "similarities", "user_profile")
SMALL = EvalConfig(heldout_per_task=2, train_per_task=1, tasks=TASKS, max_new_tokens=8, movie_pairs=1, user_pairs=1,
                   alphas=(0.0, 0.5, 1.0), cav_attributes=("genre:Comedy",), cav_alphas=(0.0, 2.0), cav_movies=1,
                   cav_users=1)
GEN_FILES = {"generations.parquet", "scores.parquet", "controls.parquet", "interpolation.parquet", "cav.parquet",
             "cav_classifiers.parquet", "eval_config.json"}


def publish_untrained_elm(store: ArtifactStore, arts: dict, lm_dir, tag: str = "untrained"):
    """A train artifact holding a tiny random ELM over the semantic movie and behavioral user spaces."""
    sem, beh = arts["semantic"], arts["behavioral"]
    spaces = (SpaceSpec("semantic_movies", "movie", sem.summary["dim"], f"semantic/{sem.version}"),
              SpaceSpec("behavioral_users", "user", beh.summary["dim"], f"behavioral/{beh.version}"))
    torch.manual_seed(0)
    elm = ELM.from_base(ELMConfig(spaces=spaces, base_model=str(lm_dir)))
    art, _ = store.produce("train", inputs={k: arts[k].version for k in ("synthesize", "semantic", "behavioral")},
                           config={"test": tag}, code_version="test",
                           build=lambda work: elm.save(work.path / "elm", include_base=True))
    return art


@pytest.fixture(scope="module")
def world(small_embeddings, tiny_lm_dir):
    """(store, evaluation inputs) with a template synthesize artifact and an untrained tiny ELM."""
    store, ingest_art, arts = small_embeddings
    arts = dict(arts, ingest=ingest_art)
    syn, _ = synthesize(arts, SynthesisConfig(teacher="template", train_movies=6, heldout_movies=3, train_users=2,
                                              heldout_users=2), store)
    train = publish_untrained_elm(store, dict(arts, synthesize=syn), tiny_lm_dir)
    return store, resolve_inputs(store, train.version)


@pytest.fixture(scope="module")
def evaluated(world):
    store, arts = world
    art, hit = evaluate(arts, SMALL, store)
    return store, arts, art


# -----------------------------------------------------------------------------
# metrics on cases with known answers


def test_a_text_identical_to_the_teachers_scores_the_truth_reference(world):
    store, arts = world
    ctx = load_context(arts, SMALL, store)
    rows = generalisation_rows(ctx, HELDOUT, TASKS)
    targets = rows["target"].tolist()
    gens = pd.concat([score_by_task(ctx, rows, targets, {"split": HELDOUT, "system": s, "prompt": "", "space": ""})
                      for s in ("elm", "truth")])
    scores = aggregate_scores(gens)
    assert set(scores["task"]) == set(TASKS)
    assert set(scores.loc[scores["task"] == "user_profile", "metric"]) == {"bc"}  # users have no semantic vector
    for r in scores.itertuples():
        assert r.elm == pytest.approx(r.truth) and r.elm_normalised == pytest.approx(1.0)
        assert r.random < r.truth  # the teacher's text matches its own movie better than another's


def test_the_baselines_references_are_the_teachers_on_the_baselines_own_movies():
    """The baseline answers fewer movies than the ELM: normalising it against the teacher on every movie set
    its score against other movies' levels (-0.25 vs the controls' paired -0.32 on the embedded default)."""
    rows = []
    for mid, (truth, rand) in {1: (0.8, 0.1), 2: (0.4, 0.3)}.items():
        for system, sc in (("elm", 0.5), ("truth", truth), ("baseline", 0.45)):
            if system == "baseline" and mid == 2:
                continue
            rows.append(dict(experiment="generalisation", split=HELDOUT, task="summary", entity_kind="movie",
                             entity_id=mid, system=system, sc=sc, sc_random=rand if system == "truth" else np.nan,
                             sc_other=np.nan, bc=np.nan, bc_random=np.nan, bc_other=np.nan))
    s = aggregate_scores(pd.DataFrame(rows)).set_index("metric").loc["sc"]
    assert s["truth"] == pytest.approx(0.6) and s["random"] == pytest.approx(0.2)  # the ELM's: both movies
    assert s["baseline_n"] == 1
    assert (s["baseline_truth"], s["baseline_random"]) == (pytest.approx(0.8), pytest.approx(0.1))
    assert s["baseline_normalised"] == pytest.approx((0.45 - 0.1) / (0.8 - 0.1))


def _planted(ctx, elm_texts, rows):
    """Generations of a planted ELM stand-in (its texts given) next to the teacher's, and their controls."""
    base = {"split": HELDOUT, "prompt": "", "space": ""}
    gens = pd.concat([score_by_task(ctx, rows, elm_texts, base | {"system": "elm"}),
                      score_by_task(ctx, rows, rows["target"].tolist(), base | {"system": "truth"})])
    ctrl = controls(gens, ctx.movies, seed=0)
    return gens, {(r.measure, r.system): r for r in ctrl.itertuples()}


def test_an_elm_that_echoes_the_teacher_reads_as_well_as_the_teacher(world):
    store, arts = world
    ctx = load_context(arts, SMALL, store)
    rows = generalisation_rows(ctx, HELDOUT, ("summary", "similarities"))
    _, c = _planted(ctx, rows["target"].tolist(), rows)
    assert c["specificity_ratio", "elm"].value == pytest.approx(1.0)
    assert c["normalised", "elm"].value == pytest.approx(1.0)
    assert c["specificity", "truth"].value > 0  # the teacher's text is about its own movie
    for m in ("decade", "genre_f1"):
        assert c[m, "elm"].value == pytest.approx(c[m, "truth"].value)
    assert c["decade", "elm"].value == 1.0  # the template teacher states every movie's decade
    assert c["named", "elm"].value == 0.0


def test_a_constant_text_has_no_specificity_and_one_distinct_text(world):
    store, arts = world
    ctx = load_context(arts, SMALL, store)
    rows = generalisation_rows(ctx, HELDOUT, ("summary", "similarities"))
    _, c = _planted(ctx, ["A film from the mid 1990s that mixes comedy and drama."] * len(rows), rows)
    assert c["specificity", "elm"].value == pytest.approx(0.0, abs=1e-6)
    assert c["sc", "elm"].value == pytest.approx(c["sc_shuffled", "elm"].value, abs=1e-6)
    n_summary = int((rows["task"] == "summary").sum())
    assert c["distinct_summary", "elm"].value == pytest.approx(1 / n_summary)
    assert c["specificity_ratio", "elm"].value == pytest.approx(0.0, abs=1e-5)


def test_profile_controls_pair_bc_with_a_shuffled_user_and_a_popular_titles_text(world):
    store, arts = world
    ctx = load_context(arts, SMALL, store)
    rows = generalisation_rows(ctx, HELDOUT, ("user_profile",))
    assert len(rows) >= 2
    base = {"split": HELDOUT, "prompt": "", "space": ""}
    popular = popular_control(ctx, rows)
    gens = pd.concat([score_by_task(ctx, rows, rows["target"].tolist(), base | {"system": "elm"}),
                      score_by_task(ctx, rows, rows["target"].tolist(), base | {"system": "truth"}), popular])
    c = {(r.measure, r.system): r for r in controls(gens, ctx.movies, seed=0).itertuples()}
    assert c["bc_normalised", "elm"].value == pytest.approx(1.0)  # an ELM echoing the teacher
    assert c["bc_specificity", "elm"].value == pytest.approx(c["bc_specificity", "truth"].value)
    assert np.isfinite(c["bc_normalised", "popular"].value)
    assert (popular["experiment"] == "control").all() and popular["output"].nunique() == 1
    text = popular["output"].iloc[0]
    liked = ctx.ratings[(ctx.ratings["rating"] >= 4)
                        & ctx.ratings["userId"].isin(ctx.user_split.index[ctx.user_split == "train"])]
    assert ctx.titles[liked["movieId"].value_counts().index[0]] in text  # the film most users liked
    lines = verdict(controls(gens, ctx.movies, seed=0))
    assert any(line.startswith("Held-out user profiles ") and "most users like" in line
               for line in lines)


def test_the_facts_control_states_decade_and_genres_and_quotes_no_tag(world):
    store, arts = world
    ctx = load_context(arts, replace(SMALL, heldout_per_task=6), store)
    rows = generalisation_rows(ctx, HELDOUT, ("summary", "similarities"))
    facts = facts_control(ctx, rows)
    assert (facts["experiment"] == "control").all() and (facts["system"] == "facts").all()
    assert len(facts) == len(rows) and (facts["output"].str.len() > 0).all()
    tags = ctx.tags.assign(tag=ctx.tags["tag"].str.strip().str.lower()).groupby("movieId")["tag"].agg(set)
    quoted = [t for e, text in zip(facts["entity_id"], facts["output"]) for t in tags.get(e, ()) if f'"{t}"' in text]
    assert quoted == []
    tagged = [i for i, e in enumerate(rows["entity_id"]) if e in tags.index and rows["task"].iloc[i] == "summary"]
    assert tagged, "the sample should hold a movie with user tags"
    # the teacher quotes the tags of a tagged movie; the control, written from the same facts less its tags, does not
    assert any('"' in rows["target"].iloc[i] and rows["target"].iloc[i] != facts["output"].iloc[i] for i in tagged)
    gens = pd.concat([_planted(ctx, rows["target"].tolist(), rows)[0], facts])
    c = {(r.measure, r.system): r for r in controls(gens, ctx.movies, seed=0).itertuples()}
    assert c["decade", "facts"].value == 1.0 and c["genre_f1", "facts"].value > 0.9
    assert c["specificity", "facts"].value > 0 and np.isfinite(c["specificity_ratio", "facts"].value)
    assert any(line.startswith("A text of only the movie's decade and genres") for line in verdict(
        controls(gens, ctx.movies, seed=0)))


def test_a_text_naming_its_movie_is_cleaned_before_it_is_scored(world):
    store, arts = world
    ctx = load_context(arts, SMALL, store)
    rows = generalisation_rows(ctx, HELDOUT, ("summary",))
    names = [ctx.names[int(e)] for e in rows["entity_id"]]
    texts = [f"{n} is a film everyone knows. It is a story about people and what they want." for n in names]
    gens = score_by_task(ctx, rows, texts, {"split": HELDOUT, "system": "baseline", "prompt": "", "space": ""})
    assert gens["named"].all()
    assert (gens["output"] == "It is a story about people and what they want.").all()
    assert (gens["output_raw"] == texts).all()
    assert (gens["sc_raw"] > gens["sc"]).all()  # the title is in the semantic document: naming it scores
    clean = score_by_task(ctx, rows, ["It is a story about people and what they want."] * len(rows),
                          {"split": HELDOUT, "system": "baseline", "prompt": "", "space": ""})
    np.testing.assert_allclose(gens["sc"], clean["sc"], rtol=1e-6)
    assert not clean["named"].any() and (clean["output_raw"] == "").all()


def test_a_text_using_words_of_its_title_is_cleaned_before_it_is_scored(world):
    """A title in pieces ("The story of Three Colors ...") scores by recall too: its words are removed."""
    store, arts = world
    ctx = load_context(arts, SMALL, store)
    rows = generalisation_rows(ctx, HELDOUT, ("summary",))
    words = [title_words(names_of(ctx, [e]))[0] for e in rows["entity_id"]]
    texts = [f"A drama about people and what they want, much like {w}." for w in words]
    gens = score_by_task(ctx, rows, texts, {"split": HELDOUT, "system": "baseline", "prompt": "", "space": ""})
    assert gens["named"].all() and (gens["output_raw"] == texts).all()
    assert (gens["output"] == "A drama about people and what they want, much like.").all()
    clean = score_by_task(ctx, rows, ["A drama about people and what they want, much like."] * len(rows),
                          {"split": HELDOUT, "system": "baseline", "prompt": "", "space": ""})
    np.testing.assert_allclose(gens["sc"], clean["sc"], rtol=1e-6)


def test_the_elm_and_the_baseline_are_compared_on_the_movies_both_answered():
    """Per task, the baseline answers a few of the ELM's movies; the comparison pairs them, and a movie only the
    ELM answered counts for neither side."""
    rows = []
    for t, (elm_sc, base_sc) in enumerate([(0.5, 0.3), (0.4, 0.2), (0.3, 0.6)]):
        for mid in (1, 2, 3):
            rows.append(dict(system="elm", task=f"t{t}", entity_id=mid, sc=elm_sc + 0.01 * mid))
            if mid < 3:
                rows.append(dict(system="baseline", task=f"t{t}", entity_id=mid, sc=base_sc + 0.01 * mid))
        rows.append(dict(system="elm", task=f"t{t}", entity_id=9, sc=-1.0))  # no baseline row: left out
    gens = pd.DataFrame(rows).assign(experiment="generalisation", split=HELDOUT, entity_kind="movie",
                                     partner_id=np.nan, alpha=np.nan, sc_random=np.nan, sc_raw=np.nan, named=False,
                                     output="x")
    c = {(r.measure, r.system): r for r in controls(gens, pd.DataFrame(columns=["movieId", "year", "genres"]),
                                                   seed=0).itertuples()}
    above, diff = c["tasks_above_baseline", "elm"], c["sc_minus_baseline", "elm"]
    assert (above.n, above.value) == (3, pytest.approx(2 / 3))
    assert above.low <= above.value <= above.high
    assert diff.n == 2 and diff.value == pytest.approx((0.2 + 0.2 - 0.3) / 3)
    assert any("above the baseline's on 2 of 3 tasks" in line
               for line in verdict(pd.DataFrame([r._asdict() for r in c.values()]).drop(columns="Index")))
    per_task = per_task_intervals(gens).set_index("task")
    assert per_task.loc["t2", "elm_minus_baseline"] == pytest.approx(-0.3)
    assert per_task.loc["t0", "elm_minus_baseline_low"] == pytest.approx(0.2)  # equal differences: no spread


def test_interpolation_ends_count_each_real_movie_once_against_the_summaries_references():
    """Every pair around the anchor starts at the anchor's own vector: one movie, however many pairs."""
    rows = [dict(experiment="generalisation", system=s, task="summary", entity_id=m, partner_id=np.nan, alpha=np.nan,
                 sc=sc, sc_random=0.2 if s == "truth" else np.nan)
            for m in (7, 8) for s, sc in (("truth", 0.6), ("elm", 0.4))]
    rows += [dict(experiment="interpolation", system="elm", task="summary", entity_id=1, partner_id=b, alpha=a,
                  sc=sc, sc_random=np.nan)
             for b, end in ((2, 0.5), (3, 0.6)) for a, sc in ((0.0, 0.3), (0.5, 0.9), (1.0, end))]
    gens = pd.DataFrame(rows).assign(split=lambda d: np.where(d["experiment"] == "interpolation", "", HELDOUT),
                                     entity_kind="movie", sc_raw=np.nan, named=False, output="x")
    c = {(r["measure"], r["system"]): r for r in endpoint_controls(gens, seed=0)}
    ends, summ = c["endpoint_normalised", "elm"], c["summary_normalised", "elm"]
    assert ends["n"] == 3 and ends["value"] == pytest.approx(((0.3 + 0.5 + 0.6) / 3 - 0.2) / 0.4)
    assert ends["low"] < ends["value"] < ends["high"]
    assert (summ["n"], summ["value"]) == (2, pytest.approx(0.5))


def test_sc_is_the_cosine_with_the_movie_vector_and_pairs_use_the_mix(world):
    store, arts = world
    ctx = load_context(arts, SMALL, store)
    rows = generalisation_rows(ctx, HELDOUT, ["summary", "similarities"])
    sc_vec, _ = movie_targets(ctx, rows["entity_id"].tolist(), rows["partner_id"].tolist())
    one = rows["partner_id"].isna().to_numpy()
    np.testing.assert_allclose(sc_vec[one], ctx.semantic.get(rows.loc[one, "entity_id"]))
    a, b = ctx.semantic.get(rows.loc[~one, "entity_id"]), ctx.semantic.get(rows.loc[~one, "partner_id"].astype(int))
    mixed = (a + b) / np.linalg.norm(a + b, axis=1, keepdims=True)
    np.testing.assert_allclose(sc_vec[~one], mixed, atol=1e-6)
    # encoding the movie's own semantic document gives the SC of the encoder against itself: ~1
    docs = pd.read_parquet(arts["semantic"].file("documents.parquet")).set_index("movieId")["document"]
    ids = rows.loc[one, "entity_id"].tolist()
    s = score_texts(ctx, docs[ids].tolist(), ctx.semantic.get(ids), None, seed=0)
    assert s["sc"] == pytest.approx(np.ones(len(ids)), abs=1e-4)


def test_bc_is_one_for_the_cf_ranking_and_low_for_a_random_one(world):
    store, arts = world
    ctx = load_context(arts, SMALL, store)
    from elm.metrics.behavioral_consistency import ndcg_at_k, random_ranking_ndcg, user_relevance

    rel = user_relevance(ctx.users.get(ctx.users.ids[:5]), ctx.cand_factors)
    assert ndcg_at_k(rel, rel, SMALL.bc_k) == pytest.approx(np.ones(5))  # the CF model's own ranking
    assert (random_ranking_ndcg(rel, SMALL.bc_k, seed=0) < 0.5).all()
    # the teacher's profiles rank movies more like the CF model than a random ranking does
    rows = generalisation_rows(ctx, HELDOUT, ["user_profile"])
    s = score_texts(ctx, rows["target"].tolist(), None, user_relevance(ctx.users.get(rows["entity_id"]),
                                                                         ctx.cand_factors), seed=0)
    assert np.isnan(s["sc"]).all() and (s["bc"] > 0).all()


def test_interpolation_endpoints_are_the_entities_own_vectors(small_embeddings):
    _, ingest_art, arts = small_embeddings
    movies = pd.read_parquet(ingest_art.file("movies.parquet"))
    ratings = pd.read_parquet(ingest_art.file("ratings.parquet"))
    sem = pd.read_parquet(arts["semantic"].file("movies.parquet"))
    (a, b), = movie_pairs(movies, ratings, "Forrest Gump", 1, sem["movieId"])
    assert movies.set_index("movieId").loc[a, "title"] == "Forrest Gump (1994)"
    genres = movies.set_index("movieId")["genres"]
    assert not set(genres[a]) & set(genres[b])  # the partner shares no genre: the middle is a new movie
    va, vb = np.random.default_rng(0).standard_normal((2, 4, 16)).astype(np.float32)
    np.testing.assert_array_equal(lerp(va, vb, 0.0), va)
    np.testing.assert_array_equal(lerp(va, vb, 1.0), vb)
    np.testing.assert_allclose(lerp(va, vb, np.array([0, 0.5, 1, 0.25])),
                               np.stack([va[0], (va[1] + vb[1]) / 2, vb[2], 0.75 * va[3] + 0.25 * vb[3]]), atol=1e-6)


# -----------------------------------------------------------------------------
# the stage


def test_evaluate_publishes_every_table_and_traces_numbers_to_texts(evaluated):
    store, arts, art = evaluated
    assert {f["name"] for f in art.manifest["files"]} == GEN_FILES
    assert art.manifest["inputs"]["train"] == arts["train"].version
    gens = pd.read_parquet(art.file("generations.parquet"))
    assert list(gens.columns) == GEN_COLUMNS + ["sc2", "sc2_random"]
    g = gens[gens["experiment"] == "generalisation"]
    held = g[g["split"] == HELDOUT]
    # the second encoder (the real packaged all-mpnet-base-v2) scored exactly the held-out movie rows, the
    # decade + genres control's included
    second = (gens["experiment"].isin(["generalisation", "control"]) & (gens["split"] == HELDOUT)
              & (gens["entity_kind"] == "movie"))
    assert (gens.loc[second, "system"] == "facts").any()
    assert gens.loc[second, "sc2"].notna().all() and gens.loc[~second, "sc2"].isna().all()
    assert not np.allclose(gens.loc[second, "sc2"], gens.loc[second, "sc"])  # another encoder, other numbers
    ctrl = pd.read_parquet(art.file("controls.parquet"))
    assert {"sc2", "specificity2", "normalised2"} <= set(ctrl["measure"])
    assert held.groupby(["task", "system"]).size().to_dict() == {
        ("similarities", "baseline"): 2, ("similarities", "elm"): 2, ("similarities", "truth"): 2,
        ("summary", "baseline"): 2, ("summary", "elm"): 2, ("summary", "truth"): 2,
        ("user_profile", "elm"): 2, ("user_profile", "truth"): 2}
    assert (g.loc[g["system"] == "elm", "prompt"].str.contains("<emb>")).all()
    assert g.loc[g["system"] == "baseline", "prompt"].str.contains('"').all()  # titles in quotes
    # scores.parquet is the mean of the rows it summarises
    scores = pd.read_parquet(art.file("scores.parquet"))
    s = scores[(scores["split"] == HELDOUT) & (scores["task"] == "summary") & (scores["metric"] == "sc")].iloc[0]
    rows = held[held["task"] == "summary"]
    assert s["elm"] == pytest.approx(rows.loc[rows["system"] == "elm", "sc"].mean())
    assert s["truth"] == pytest.approx(rows.loc[rows["system"] == "truth", "sc"].mean())
    assert s["random"] == pytest.approx(rows.loc[rows["system"] == "truth", "sc_random"].mean())
    assert s["elm_normalised"] == pytest.approx(normalised(s["elm"], s["random"], s["truth"]))
    # the truth reference is the synthesize stage's reference SC, measured the same way
    ref = pd.read_parquet(arts["synthesize"].file("reference_sc.parquet")).set_index("task")
    if ref.loc["summary", "n"] == 2:
        assert s["truth"] == pytest.approx(ref.loc["summary", "sc_truth"], abs=1e-5)
    # interpolation: the ends are the real movies (nearest cosine 1), the middle is not
    interp = gens[(gens["experiment"] == "interpolation") & (gens["system"] == "elm")]
    ends = interp[interp["alpha"].isin([0.0, 1.0])]
    assert ends["nearest_cosine"].to_numpy() == pytest.approx(np.ones(len(ends)), abs=1e-5)
    assert (interp.loc[interp["alpha"] == 0.5, "nearest_cosine"] < 0.9999).all()
    assert set(interp["entity_kind"]) == {"movie", "user"}
    # CAV: the moved vectors leave the data as alpha grows; the classifier was measured on held-out entities
    cav = gens[gens["experiment"] == "cav"]
    assert set(cav["attribute"]) == {"genre:Comedy"} and cav["attribute_score"].between(0, 1).all()
    movie = cav[cav["entity_kind"] == "movie"].sort_values("alpha")
    assert movie["nearest_cosine"].iloc[0] == pytest.approx(1.0, abs=1e-5)
    assert movie["nearest_cosine"].iloc[-1] < 0.9999
    cls = pd.read_parquet(art.file("cav_classifiers.parquet"))
    assert set(cls["space"]) == {"semantic_movies", "behavioral_users"}
    assert (cls["heldout_accuracy"] > 0.6).all() and (cls["n_heldout"] > 0).all()
    assert art.summary["headline"]["tasks"] == 2


def test_the_second_encoder_must_not_be_the_one_that_made_the_vectors(world):
    store, arts = world
    with pytest.raises(EvaluationError, match="is the encoder that made the semantic vectors"):
        evaluate(arts, replace(SMALL, second_encoder="sentence-transformers/all-MiniLM-L6-v2"), store)


def test_evaluate_again_is_a_cache_hit_and_the_report_renders(evaluated):
    store, arts, art = evaluated
    again, hit = evaluate(arts, SMALL, store)
    assert hit and again.version == art.version
    rep, _ = build_report(art, store)
    for f in ("report.md", "report.html", "per_task_sc.png", "interpolation.png", "cav.png"):
        assert (rep.path / f).stat().st_size > 0
    text = headline_text(rep)
    assert "report.html" in text and "SC movies" in text


def test_an_interrupted_evaluation_resumes_with_the_parts_it_finished(world, monkeypatch):
    store, arts = world
    cfg = EvalConfig(**{**SMALL.to_dict(), "tasks": ("summary",), "seed": 1, "cav_attributes": (), "user_pairs": 0})
    real_interp = parts.interpolation_movie_part

    def die(ctx):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(parts, "interpolation_movie_part", die)
    with pytest.raises(KeyboardInterrupt):
        evaluate(arts, cfg, store)
    assert not store.versions("evaluate") or all(a.manifest["config"]["seed"] != 1 for a in store.versions("evaluate"))
    work = next(p for p in (store.root / "evaluate").iterdir() if p.name.startswith(".work-"))
    done = sorted(p.name for p in (work / PARTS).iterdir())
    assert done == ["generalisation__baseline.parquet", "generalisation__heldout.parquet",
                    "generalisation__train.parquet"]
    calls = []

    def must_not_run(*a, **k):
        calls.append(a)
        raise AssertionError("a finished part ran again")

    monkeypatch.setattr(parts, "interpolation_movie_part", real_interp)
    monkeypatch.setattr(parts, "generalisation_part", must_not_run)
    monkeypatch.setattr(parts, "baseline_part", must_not_run)
    art, hit = evaluate(arts, cfg, store)
    assert not hit and not calls and not work.exists()
    gens = pd.read_parquet(art.file("generations.parquet"))
    assert set(gens["experiment"]) == {"generalisation", "control", "interpolation"}  # control: decade + genres text
    # no CAV attributes: the classifier table is empty but keeps its columns, so SQL over the store still works
    from elm.sql import connect

    assert connect(store).sql(f"select count(*) from evaluate_cav_classifiers_all where version = '{art.version}'"
                              ).fetchall() == [(0,)]


# -----------------------------------------------------------------------------
# bad input


def test_a_model_trained_on_another_space_is_refused(world, tmp_path):
    store, arts = world
    from elm import vectors as vec

    published = len(store.versions("evaluate"))
    # The fakes live in a store of their own: published in the shared one, they would become its `latest`
    # semantic artifact for every test that runs after this one.
    fakes = ArtifactStore(tmp_path / "fakes")
    other_dim = vec.Vectors("movieId", np.arange(1, 6, dtype=np.int64), np.ones((5, 8), dtype=np.float32))
    fake, _ = fakes.produce("semantic", inputs={"ingest": arts["ingest"].version}, config={"fake": "dim 8"},
                            code_version="test", build=lambda w: vec.write(w.path / "movies.parquet", other_dim))
    with pytest.raises(EvaluationError, match=r"384-dimensional .* dimension 8"):
        evaluate(dict(arts, semantic=fake), SMALL, store)
    same_dim = vec.Vectors("movieId", np.arange(1, 6, dtype=np.int64), np.ones((5, 384), dtype=np.float32))
    fake2, _ = fakes.produce("semantic", inputs={"ingest": arts["ingest"].version}, config={"fake": "refit"},
                             code_version="test", build=lambda w: vec.write(w.path / "movies.parquet", same_dim))
    with pytest.raises(EvaluationError, match="was trained on semantic/"):
        evaluate(dict(arts, semantic=fake2), SMALL, store)
    assert len(store.versions("evaluate")) == published


def test_no_heldout_examples_is_a_clear_error(world):
    store, arts = world
    ex = pd.read_parquet(arts["synthesize"].file("examples.parquet"))
    ex = ex[ex["split"] != HELDOUT]
    syn, _ = store.produce("synthesize", inputs={"test": "no held-out"}, config={}, code_version="test",
                           build=lambda w: ex.to_parquet(w.path / "examples.parquet"))
    with pytest.raises(EvaluationError, match="no held-out examples"):
        evaluate(dict(arts, synthesize=syn), SMALL, store)


def test_a_cav_attribute_with_too_few_positives_fails_before_generating(world, monkeypatch):
    store, arts = world
    monkeypatch.setattr(parts, "generalisation_part", lambda *a: pytest.fail("generated before checking the CAVs"))
    cfg = EvalConfig(**{**SMALL.to_dict(), "cav_attributes": ("tag:funny",), "cav_min_positives": 50})
    with pytest.raises(CAVError, match=r"tag:funny.*positive"):
        evaluate(arts, cfg, store)


@pytest.mark.parametrize("bad, match", [
    (dict(heldout_per_task=1), "heldout_per_task"), (dict(tasks=("nope",)), "unknown task"),
    (dict(alphas=(0.0, 1.5)), "alphas"), (dict(cav_attributes=("mood:happy",)), "genre"),
    (dict(max_new_tokens=2), "max_new_tokens"), (dict(batch_size=0), "batch_size"),
    (dict(guidance_scale={"movies": 2.0}), r"guidance_scale: keys are slot kinds.*\['movies'\]"),
    (dict(guidance_scale=-0.5), r"guidance_scale: the movie scale must be a number in \[0, 10\]")])
def test_eval_config_validates(bad, match):
    with pytest.raises(ValueError, match=match):
        EvalConfig(**bad)


def test_eval_config_round_trips_and_rejects_unknown_fields(tmp_path):
    p = tmp_path / "eval.json"
    p.write_text(pd.Series(SMALL.to_dict()).to_json())
    assert EvalConfig.load(p) == SMALL
    assert EvalConfig(guidance_scale=1.5).guidance_scale == {"movie": 1.5, "user": 1.5}  # one number: both kinds
    assert EvalConfig.from_dict({"guidance_scale": {"movie": 3}}).guidance_scale == {"movie": 3.0, "user": 1.0}
    with pytest.raises(ValueError, match="EvalConfig: unknown field"):
        EvalConfig.from_dict({"heldout": 3})


# -----------------------------------------------------------------------------
# the CLI


def test_cli_evaluate_then_report(evaluated, tmp_path):
    store, arts, art = evaluated
    cfg = tmp_path / "eval.json"
    cfg.write_text(pd.Series(SMALL.to_dict()).to_json())
    r = CliRunner().invoke(app, ["evaluate", "--artifacts", str(store.root), "--config", str(cfg),
                                 "--from", f"train={arts['train'].version}"])
    assert r.exit_code == 0, r.output
    assert "cache hit" in r.output and "summary" in r.output and "user_profile" in r.output
    r = CliRunner().invoke(app, ["report", "--artifacts", str(store.root), "--from", f"evaluate={art.version}"])
    assert r.exit_code == 0, r.output
    assert "report.html" in r.output
    r = CliRunner().invoke(app, ["evaluate", "--artifacts", str(store.root), "--from", "train=doesnotexist"])
    assert r.exit_code == 1 and "doesnotexist" in r.output


def test_normalised_score_is_zero_at_random_one_at_truth_and_nan_without_a_gap():
    assert [normalised(x, 0.3, 0.7) for x in (0.3, 0.7, 0.5)] == pytest.approx([0, 1, 0.5])
    assert np.isnan(normalised(0.05, 0.026, 0.0262))  # references within noise of each other: no scale
    assert np.isnan(normalised(0.5, np.nan, 0.7))
