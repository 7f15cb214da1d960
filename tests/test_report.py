"""The report stage over a small synthetic evaluate artifact: tables match the inputs, the page renders, plots exist."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from elm.artifacts import ArtifactStore
from elm.evaluate.controls import controls
from elm.evaluate.tables import aggregate_cav
from elm.report.files import REPORT_FILES
from elm.report.html import markdown_to_html, simple_markdown
from elm.report.page import clip
from elm.report.queries import ReportError
from elm.report.stage import build_report, headline_text, report_markdown, report_tables

MOVIE_TASKS = ["summary", "genres_and_mood", "similar_movies"]
HELDOUT = {1: "Toy Story (1995)", 2: "Jumanji (1995)", 3: "Heat (1995)", 4: "Casino (1995)"}
TRAIN = {10: "Alien (1979)", 11: "Forrest Gump (1994)"}
USERS = [100, 101, 102]
INTERP_ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]
CAV_ALPHAS = [0.0, 2.0, 4.0]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _row(**kw) -> dict:
    base = {"experiment": "generalisation", "split": "heldout", "partner_id": None, "title": "", "alpha": np.nan,
            "attribute": "", "space": "semantic_movies", "prompt": "Describe the movie <emb>.", "sc": np.nan,
            "sc_random": np.nan, "bc": np.nan, "bc_random": np.nan, "attribute_score": np.nan,
            "nearest_cosine": 1.0, "named": False}
    row = {**base, **kw}
    return {**row, "sc_raw": row["sc"]}


def make_tables(rng: np.random.Generator, experiments: bool = True) -> dict[str, pd.DataFrame]:
    """Generations and the tables evaluate aggregates from them, as elm/evaluate/stage.py writes them."""
    gens = []
    level = {"elm": 0.45, "baseline": 0.55, "truth": 0.65}
    for split, movies in (("heldout", HELDOUT), ("train", TRAIN)):
        for mid, title in movies.items():
            for task in MOVIE_TASKS:
                for system in ("elm", "baseline", "truth"):
                    if system == "baseline" and mid == next(iter(HELDOUT)):
                        continue  # the baseline answers only some movies, as evaluate's baseline_per_task does
                    gens.append(_row(system=system, split=split, task=task, entity_kind="movie", entity_id=mid,
                                     title=title, output=f"{system} text about movie {mid} for {task} | *wow* <b>",
                                     sc=level[system] + rng.normal(0, 0.05), sc_random=0.2 + rng.normal(0, 0.02)))
    for uid in USERS:
        for system in ("elm", "truth"):
            gens.append(_row(system=system, task="user_profile", entity_kind="user", entity_id=uid,
                             space="behavioral_users", prompt="Describe the user <emb>.",
                             output=f"{system} profile of user {uid}", bc=0.3 + rng.uniform(0, 0.2),
                             bc_random=0.1 + rng.uniform(0, 0.05)))
    if experiments:
        for a in INTERP_ALPHAS:
            for system in ("elm", "baseline"):
                gens.append(_row(experiment="interpolation", system=system, task="summary", entity_kind="movie",
                                 entity_id=11, partner_id=10, title=TRAIN[11], alpha=a,
                                 output=f"{system} blend at a={a}", nearest_cosine=0.9 - 0.2 * a,
                                 sc=0.4 + 0.1 * a if system == "elm" else 0.5 - 0.02 * a))
        for a in CAV_ALPHAS:
            gens.append(_row(experiment="cav", system="elm", task="summary", entity_kind="movie", entity_id=1,
                             title=HELDOUT[1], alpha=a, attribute="genre:Comedy", space="semantic_movies",
                             output=f"funnier by {a}",
                             sc=0.5 - 0.02 * a, attribute_score=0.2 + 0.15 * a, nearest_cosine=0.95 - 0.05 * a))
    g = pd.DataFrame(gens)
    g["partner_id"] = g["partner_id"].astype("Int64")
    g["entity_id"] = g["entity_id"].astype("int64")

    gen = g[g["experiment"] == "generalisation"]
    rows = []
    for (split, task, kind), d in gen.groupby(["split", "task", "entity_kind"]):
        metric = "bc" if kind == "user" else "sc"
        by = d.groupby("system")[metric].mean()
        rnd = d[f"{metric}_random"].mean()
        truth = by["truth"]
        base = by.get("baseline", np.nan)
        # the baseline's references: the teacher's on the movies the baseline answered
        paired = d[(d["system"] == "truth") & d["entity_id"].isin(d.loc[d["system"] == "baseline", "entity_id"])]
        b_truth, b_rnd = paired[metric].mean(), paired[f"{metric}_random"].mean()
        rows.append({"split": split, "task": task, "entity_kind": kind, "metric": metric,
                     "n": int(d["entity_id"].nunique()), "elm": by["elm"], "baseline": base, "truth": truth,
                     "random": rnd, "elm_normalised": (by["elm"] - rnd) / (truth - rnd),
                     "baseline_n": int(paired["entity_id"].nunique()), "baseline_truth": b_truth,
                     "baseline_random": b_rnd, "baseline_normalised": (base - b_rnd) / (b_truth - b_rnd)})
    scores = pd.DataFrame(rows)

    interp_cols = ["entity_kind", "pair", "a_id", "b_id", "alpha", "system", "metric", "value", "random", "truth"]
    clf_cols = ["space", "attribute", "n_pos", "n_neg", "n_heldout", "train_accuracy", "heldout_accuracy",
                "heldout_balanced_accuracy"]
    if experiments:
        ip = g[g["experiment"] == "interpolation"]
        interp = pd.DataFrame({"entity_kind": "movie", "pair": f"{TRAIN[11]} + {TRAIN[10]}", "a_id": 11, "b_id": 10,
                               "alpha": ip["alpha"], "system": ip["system"], "metric": "sc", "value": ip["sc"],
                               "random": 0.2, "truth": 0.65})
        users = pd.DataFrame([{"entity_kind": "user", "pair": "user 100 + user 101", "a_id": 100, "b_id": 101,
                               "alpha": a, "system": "elm", "metric": "bc", "value": 0.3 + 0.05 * a,
                               "random": 0.1, "truth": 0.45} for a in INTERP_ALPHAS])
        interp = pd.concat([interp, users], ignore_index=True)
        cav = aggregate_cav(g, {"movie": (0.2, 0.65), "user": (0.1, 0.45)})
        clf = pd.DataFrame([{"space": "semantic_movies", "attribute": "genre:Comedy", "n_pos": 40, "n_neg": 60,
                             "n_heldout": 25, "train_accuracy": 0.93, "heldout_accuracy": 0.84,
                             "heldout_balanced_accuracy": 0.81}])
    else:  # switched off: empty tables, one with its columns and one without any
        interp, cav, clf = pd.DataFrame(columns=interp_cols), pd.DataFrame(), pd.DataFrame(columns=clf_cols)
    movies = pd.DataFrame({"movieId": list(HELDOUT) + list(TRAIN), "year": 1995.0,
                           "genres": [["Comedy"]] * (len(HELDOUT) + len(TRAIN))})
    return {"generations": g, "scores": scores, "controls": controls(g, movies), "interpolation": interp, "cav": cav,
            "cav_classifiers": clf}


def make_evaluate(store: ArtifactStore, tables: dict[str, pd.DataFrame], tag: str = "full", nan_scores: bool = False):
    """An evaluate artifact of these tables. nan_scores: scores.parquet keeps NaN as NaN (numpy writers), not NULL."""

    def build(work) -> None:
        for name, df in tables.items():
            if name == "scores" and nan_scores:
                pq.write_table(pa.table({c: pa.array(df[c].to_numpy(), from_pandas=False) for c in df}),
                               work.path / "scores.parquet")
            else:
                df.to_parquet(work.path / f"{name}.parquet", index=False)
        (work.path / "eval_config.json").write_text(json.dumps({"max_new_tokens": 64, "tag": tag}))
        work.summary["model"] = "train/abc123"

    art, _ = store.produce("evaluate", inputs={"train": "abc123", "synthesize": "def456"}, config={"tag": tag},
                           code_version="t", build=build)
    return art


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    store = ArtifactStore(tmp_path_factory.mktemp("report") / "artifacts")
    tables = make_tables(np.random.default_rng(0))
    ev = make_evaluate(store, tables)
    art, hit = build_report(ev, store)
    return store, ev, tables, art, hit


def test_publishes_tables_plots_and_page(built):
    _, ev, _, art, hit = built
    assert not hit
    assert set(REPORT_FILES) <= {f["name"] for f in art.manifest["files"]}
    for png in ("per_task_sc.png", "interpolation.png", "cav.png"):
        data = art.file(png).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000
    assert art.manifest["inputs"] == {"evaluate": ev.version}
    assert art.summary["evaluate"] == ev.version
    assert art.summary["headline"]["interpolation"] == "run"
    allowed = {".parquet", ".png", ".md", ".html", ".json"}
    assert all(p.suffix in allowed for p in art.path.iterdir())


def test_per_task_values_carry_bootstrap_intervals(built):
    _, _, _, art, _ = built
    per_task = pd.read_parquet(art.file("per_task.parquet"))
    for system in ("elm", "baseline"):
        v, lo, hi = (per_task[f"{system}_normalised{x}"] for x in ("", "_low", "_high"))
        assert lo.notna().all() and (lo <= hi).all()
        assert ((lo <= v + 1e-9) & (v - 1e-9 <= hi)).mean() >= 0.8  # the estimate sits inside its interval
        assert (hi - lo > 0).all()  # 4 movies per task: no interval is a point
    assert "\\[" in art.file("report.md").read_text()  # shown as value [low, high] in the per-task table


def test_the_page_opens_with_the_controls(built):
    _, _, tables, art, _ = built
    md = art.file("report.md").read_text()
    assert md.index("## Does the text follow the vector?") < md.index("## Headline")
    spec = tables["controls"].set_index(["measure", "system"]).loc[("specificity", "elm")]
    assert spec["value"] == pytest.approx(0.25, abs=0.05)  # elm 0.45 against a shuffled 0.2
    assert "The ELM's text depends on its vector: specificity" in md
    assert all(f"{spec[k]:.3f}" in md for k in ("value", "low", "high"))
    pd.testing.assert_frame_equal(pd.read_parquet(art.file("controls.parquet")), tables["controls"])
    assert "does the text follow the vector?" in headline_text(art)


def test_per_task_matches_scores(built):
    _, _, tables, art, _ = built
    per_task = pd.read_parquet(art.file("per_task.parquet"))
    s = tables["scores"]
    movies = s[(s["entity_kind"] == "movie") & (s["metric"] == "sc")]
    assert set(per_task["split"]) == {"heldout", "train"}
    assert list(per_task["split"]).index("train") == len(MOVIE_TASKS)  # held-out rows first
    merged = per_task.merge(movies, on=["split", "task"], suffixes=("", "_expected"))
    assert len(merged) == len(movies) == 2 * len(MOVIE_TASKS)
    for col in ("n", "elm", "baseline", "truth", "random", "elm_normalised", "baseline_normalised"):
        np.testing.assert_allclose(merged[col], merged[f"{col}_expected"], err_msg=col)


def test_headline_numbers(built):
    _, _, tables, art, _ = built
    h = pd.read_parquet(art.file("headline.parquet"))
    s = tables["scores"]
    held = s[(s["split"] == "heldout") & (s["entity_kind"] == "movie") & (s["metric"] == "sc")]
    train = s[(s["split"] == "train") & (s["entity_kind"] == "movie") & (s["metric"] == "sc")]

    def row(name, system):
        hit = h[(h["name"] == name) & (h["system"] == system)]
        assert len(hit) == 1, (name, system, h)
        return hit.iloc[0]

    def pooled(col):  # normalise the means over tasks (a task with truth ~ random cannot blow it up)
        d = held[held[col].notna()]
        refs = ("baseline_random", "baseline_truth") if col == "baseline" else ("random", "truth")
        return (d[col].mean() - d[refs[0]].mean()) / (d[refs[1]].mean() - d[refs[0]].mean())

    e = row("SC movies, held-out, mean over tasks", "elm")
    assert e["normalised"] == pytest.approx(pooled("elm"))
    assert e["value"] == pytest.approx(held["elm"].mean()) and e["n"] == len(MOVIE_TASKS)
    b = row("SC movies, held-out, mean over tasks", "baseline")
    assert b["normalised"] == pytest.approx(pooled("baseline"))
    # paired: against the teacher on the baseline's own movies, not on every held-out movie
    assert b["truth"] == pytest.approx(held["baseline_truth"].mean())
    assert b["truth"] != pytest.approx(held["truth"].mean(), abs=1e-6)
    assert row("SC movies, train, mean over tasks", "elm")["value"] == pytest.approx(train["elm"].mean())
    key = art.summary["headline"]["sc_normalised_heldout_movies_elm"]  # rounded to 4 digits in the manifest
    assert key == pytest.approx(pooled("elm"), abs=1e-4)

    u = row("BC held-out users, user_profile", "elm")
    user = s[(s["entity_kind"] == "user") & (s["split"] == "heldout")].iloc[0]
    assert u["value"] == pytest.approx(user["elm"]) and u["truth"] == pytest.approx(user["truth"])
    assert u["normalised"] == pytest.approx(user["elm_normalised"])
    assert not ((h["section"] == "user profiles") & (h["system"] == "baseline")).any()  # no baseline there

    interp = h[h["section"] == "interpolation"]
    assert len(interp) == 2 * len(INTERP_ALPHAS)  # movies only, elm and baseline
    ip = tables["interpolation"]
    mid = ip[(ip["entity_kind"] == "movie") & (ip["alpha"] == 0.5) & (ip["system"] == "elm")]["value"].mean()
    assert row("SC movies, a = 0.50", "elm")["value"] == pytest.approx(mid)
    assert row("SC movies, a = 0.50", "elm")["normalised"] == pytest.approx((mid - 0.2) / (0.65 - 0.2))

    cav = h[h["section"] == "cav"]
    assert list(cav["name"]) == ["genre:Comedy (semantic_movies): score in text at a = 0",
                                 "genre:Comedy (semantic_movies): score in text at a = 4",
                                 "genre:Comedy (semantic_movies): classifier held-out acc."]
    assert list(cav["value"]) == pytest.approx([0.2, 0.8, 0.84])
    assert list(h["section"].unique()) == ["generalisation", "user profiles", "interpolation", "cav"]


def test_headline_rows_carry_intervals_over_entities(built):
    _, _, tables, art, _ = built
    h = pd.read_parquet(art.file("headline.parquet"))
    for name, system in (("SC movies, held-out, mean over tasks", "elm"), ("BC held-out users, user_profile", "elm")):
        r = h[(h["name"] == name) & (h["system"] == system)].iloc[0]
        assert r["value_low"] < r["value"] < r["value_high"], r
        assert r["normalised_low"] < r["normalised"] < r["normalised_high"], r
    # one interpolation pair and one moved movie: nothing to resample, so no interval rather than a fake one
    others = h[h["section"].isin(["interpolation", "cav"])]
    assert len(others) and others["value_low"].isna().all()
    assert "[" in headline_text(art).split("SC movies, held-out")[1].splitlines()[0]


def test_markdown_and_html(built):
    _, ev, _, art, _ = built
    md = report_markdown(art)
    assert md == art.file("report.md").read_text()
    for task in MOVIE_TASKS + ["user_profile"]:
        assert task in md
    assert ev.version in md and "train/abc123" in md
    assert "elm text about movie 1 for" in md and "truth text about movie 1 for" in md  # the ELM next to the teacher
    assert "baseline blend at a=0.5" in md and "funnier by 4.0" in md  # interpolation and CAV sequences
    assert r"\| \*wow\* &lt;b&gt;" in md  # generated text is escaped, not interpreted
    assert "How to read this" in md and "Not run" not in md
    for png in ("per_task_sc.png", "interpolation.png", "cav.png"):
        assert f"]({png})" in md
    page = art.file("report.html").read_text()
    assert re.search(r'<img [^>]*src="interpolation.png"', page)
    assert "<table>" in page and "&lt;b&gt;" in page and "<b>" not in page


def test_cache_hit(built):
    store, ev, _, art, _ = built
    again, hit = build_report(ev, store)
    assert hit and again.version == art.version


def test_tables_and_text(built):
    _, _, _, art, _ = built
    t = report_tables(art)
    assert set(t) == {"per_task", "headline", "history"}
    json.dumps(t, allow_nan=False)  # JSON-safe: NaN became None
    # for a screen: the key columns first, three digits, no interval column pairs
    assert list(t["headline"][0])[:3] == ["measure", "system", "normalised"]
    assert list(t["per_task"][0])[:3] == ["task", "split", "elm_normalised"]
    numbers = [v for r in t["headline"] + t["per_task"] for v in r.values() if isinstance(v, float)]
    assert numbers and all(v == round(v, 3) for v in numbers)
    assert all(r["baseline"] is not None for r in t["per_task"])
    assert all(r["random"] is None for r in t["headline"] if r["section"] == "cav")
    text = headline_text(art)
    assert "SC movies, held-out, mean over tasks" in text and "report.html" in text
    assert str(art.path / "report.html") in text or "artifacts/report/" in text


def test_history_has_one_row_per_evaluate_version_up_to_the_reported_one(tmp_path):
    """Three evaluations land over time: each report's history holds the ones made up to it, oldest first."""
    import time

    from elm.report.queries import open_evaluate

    store = ArtifactStore(tmp_path / "artifacts")
    evs = []
    for i in range(3):
        evs.append(make_evaluate(store, make_tables(np.random.default_rng(10 + i), experiments=False), tag=f"v{i}"))
        time.sleep(1.05)  # created_at has one-second resolution
    first, _ = build_report(evs[0], store)
    last, _ = build_report(evs[2], store)
    h = pd.read_parquet(last.file("history.parquet"))
    assert list(h["evaluate"]) == [e.version for e in evs]
    assert len(pd.read_parquet(first.file("history.parquet"))) == 1
    # the pooled normalised SC per version is what the headline of that version says
    con, _ = open_evaluate(evs[1])
    from elm.report.queries import headline_table

    hl = headline_table(con)
    want = hl[(hl["name"] == "SC movies, held-out, mean over tasks") & (hl["system"] == "elm")]["normalised"].iloc[0]
    assert h["sc_normalised_elm"].iloc[1] == pytest.approx(want)
    assert len(h) == len(store.versions("evaluate")) == 3
    md = report_markdown(last)
    assert "## History: every evaluation in the store" in md and "(this)" in md and "history.png" in md
    assert (last.path / "history.png").read_bytes()[:8] == PNG_MAGIC
    assert len(report_tables(last)["history"]) == 3


def test_experiments_not_run(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    ev = make_evaluate(store, make_tables(np.random.default_rng(1), experiments=False), tag="off")
    art, hit = build_report(ev, store)
    assert not hit
    names = {p.name for p in art.path.iterdir()}
    assert "interpolation.png" not in names and "cav.png" not in names and "per_task_sc.png" in names
    md = report_markdown(art)
    assert md.count("Not run") == 3  # interpolation, CAV, CAV classifiers
    assert "interpolation.png" not in md
    h = pd.read_parquet(art.file("headline.parquet"))
    assert set(h["section"]) == {"generalisation", "user profiles"}
    assert art.summary["headline"]["cav"] == "not run"
    assert "not run: cav, cav_classifiers, interpolation" in headline_text(art)


def test_missing_column_and_file(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    tables = make_tables(np.random.default_rng(2), experiments=False)
    tables["scores"] = tables["scores"].drop(columns=["elm_normalised"])
    with pytest.raises(ReportError, match=r"scores\.parquet lacks the columns \['elm_normalised'\]"):
        build_report(make_evaluate(store, tables, tag="bad"), store)
    assert store.latest("report") is None  # nothing published
    tables = make_tables(np.random.default_rng(2), experiments=False)
    del tables["cav_classifiers"]
    with pytest.raises(ReportError, match=r"no cav_classifiers\.parquet"):
        build_report(make_evaluate(store, tables, tag="nofile"), store)


def test_html_without_python_markdown():
    md = ("# T\n\nsome `code` and **bold** \\| x &lt;b&gt;\n\n![plot](interpolation.png)\n\n"
          "| a | n |\n| --- | ---: |\n| x \\| y | 1 |\n\n```json\n{\"k\": 1}\n```\n")
    body = simple_markdown(md)
    assert "<h1>T</h1>" in body and "<code>code</code>" in body and "<strong>bold</strong>" in body
    assert '<img alt="plot" src="interpolation.png" />' in body
    assert "<td>x | y</td>" in body and '<td style="text-align: right;">1</td>' in body
    assert "&lt;b&gt;" in body and '<pre><code>{"k": 1}' in body
    assert markdown_to_html(md).startswith("<!DOCTYPE html>")


def test_clip():
    assert clip("  short\n text ") == "short text"
    long = clip("word " * 200, limit=50)
    assert len(long) <= 52 and long.endswith(" …") and "wor …" not in long


def test_nan_means_not_applicable(tmp_path):
    """A task without a baseline (NaN, as numpy writes it) is left out of the baseline's mean, not poisoning it."""
    store = ArtifactStore(tmp_path / "artifacts")
    tables = make_tables(np.random.default_rng(3), experiments=False)
    s = tables["scores"]
    gone = (s["task"] == "summary") & (s["entity_kind"] == "movie")
    s.loc[gone, ["baseline", "baseline_normalised"]] = np.nan
    ev = make_evaluate(store, tables, tag="nan", nan_scores=True)
    assert pq.read_table(ev.file("scores.parquet")).column("baseline").null_count == 0  # really NaN, not NULL
    art, _ = build_report(ev, store)
    h = pd.read_parquet(art.file("headline.parquet"))
    held = s[(s["split"] == "heldout") & (s["entity_kind"] == "movie")]
    b = h[(h["name"] == "SC movies, held-out, mean over tasks") & (h["system"] == "baseline")].iloc[0]
    assert b["n"] == len(MOVIE_TASKS) - 1
    d = held[held["baseline"].notna()]
    pooled = (d["baseline"].mean() - d["baseline_random"].mean()) / (d["baseline_truth"].mean() - d["baseline_random"].mean())
    assert b["normalised"] == pytest.approx(pooled)
    assert b["random"] == pytest.approx(d["baseline_random"].mean())
    json.dumps(report_tables(art), allow_nan=False)
    assert "| `summary` | 4 | " in report_markdown(art) and " – | " in report_markdown(art)
