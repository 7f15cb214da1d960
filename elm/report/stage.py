"""The report stage: one page that says how well the ELM reads vectors, computed with SQL over an evaluate artifact.

Every table is a DuckDB query (the ``*_SQL`` constants below) over views named the way ``elm sql`` names the
latest evaluate artifact's tables (``evaluate_scores``, ``evaluate_generations``, ``evaluate_interpolation``,
``evaluate_cav``, ``evaluate_cav_classifiers``), so any of them can be pasted into ``elm sql`` as it is. Here
the views point at the evaluate version being reported, not at ``latest``, and read Parquet with
``can_have_nan = true`` (see the note on NaN below), as ``elm sql``'s views do.

The page always shows the random and ground-truth references next to a score (PAPER.md, "Metrics"): a raw SC
of 0.4 means nothing until one knows that a random movie's text scores 0.3 and the teacher's own text 0.5.

The report artifact (``REPORT_FILES``)::

    report/<v>/per_task.parquet     SC of movie descriptions per task and split (generalisation)
    report/<v>/headline.parquet     the headline figures, one per row (section, name, system, n, value, ...)
    report/<v>/per_task_sc.png      normalised SC per task on held-out movies, ELM vs baseline
    report/<v>/interpolation.png    SC (movies) / BC (users) against the interpolation weight a
    report/<v>/cav.png              SC or BC and the attribute's score against the CAV step, per attribute
    report/<v>/report.md            the page: tables, plots, example generations
    report/<v>/report.html          the same page as HTML, plots inline

A plot whose experiment was not run is not written, and the page says so.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from elm.artifacts import Artifact, ArtifactError, ArtifactStore, WorkDir

log = logging.getLogger(__name__)

STAGE = "report"
CODE_VERSION = "1"

PER_TASK_FILE = "per_task.parquet"
HEADLINE_FILE = "headline.parquet"
PER_TASK_PNG = "per_task_sc.png"
INTERPOLATION_PNG = "interpolation.png"
CAV_PNG = "cav.png"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"

REPORT_FILES = {
    PER_TASK_FILE: "SC of movie descriptions per task: split (heldout|train), task, n, elm, baseline, truth, random, "
                   "elm_normalised, baseline_normalised",
    HEADLINE_FILE: "the headline figures: section, name, system, n, value, random, truth, normalised "
                   "(n counts what the value averages: tasks, pairs, examples or held-out entities)",
    PER_TASK_PNG: "normalised SC per task on held-out movies, ELM vs baseline",
    INTERPOLATION_PNG: "mean SC (movies) / BC (users) over pairs against the interpolation weight a, with references "
                       "(absent when interpolation was not run)",
    CAV_PNG: "per attribute: SC or BC and the attribute's score against the CAV step (absent when CAVs were not run)",
    REPORT_MD: "the page: headline, per-task table, plots, CAV classifiers, example generations",
    REPORT_HTML: "the same page as HTML; plots inline by relative path",
}
"""What lands in a report artifact, file by file."""

EVALUATE_TABLES: dict[str, dict[str, str]] = {
    "generations": {
        "experiment": "VARCHAR", "system": "VARCHAR", "split": "VARCHAR", "task": "VARCHAR",
        "entity_kind": "VARCHAR", "entity_id": "BIGINT", "partner_id": "BIGINT", "title": "VARCHAR",
        "alpha": "DOUBLE", "attribute": "VARCHAR", "space": "VARCHAR", "prompt": "VARCHAR", "output": "VARCHAR",
        "sc": "DOUBLE", "bc": "DOUBLE", "attribute_score": "DOUBLE", "nearest_cosine": "DOUBLE",
    },
    "scores": {
        "split": "VARCHAR", "task": "VARCHAR", "entity_kind": "VARCHAR", "metric": "VARCHAR", "n": "BIGINT",
        "elm": "DOUBLE", "baseline": "DOUBLE", "truth": "DOUBLE", "random": "DOUBLE",
        "elm_normalised": "DOUBLE", "baseline_normalised": "DOUBLE",
    },
    "interpolation": {
        "entity_kind": "VARCHAR", "pair": "VARCHAR", "a_id": "BIGINT", "b_id": "BIGINT", "alpha": "DOUBLE",
        "system": "VARCHAR", "metric": "VARCHAR", "value": "DOUBLE", "random": "DOUBLE", "truth": "DOUBLE",
    },
    "cav": {
        "space": "VARCHAR", "entity_kind": "VARCHAR", "attribute": "VARCHAR", "alpha": "DOUBLE", "metric": "VARCHAR",
        "n": "BIGINT", "value": "DOUBLE", "attribute_score": "DOUBLE", "random": "DOUBLE", "truth": "DOUBLE",
    },
    "cav_classifiers": {
        "space": "VARCHAR", "attribute": "VARCHAR", "n_pos": "BIGINT", "n_neg": "BIGINT", "n_heldout": "BIGINT",
        "train_accuracy": "DOUBLE", "heldout_accuracy": "DOUBLE", "heldout_balanced_accuracy": "DOUBLE",
    },
}
"""The evaluate artifact's tables (<name>.parquet) and the columns this module reads from each."""
OPTIONAL_EXPERIMENTS = ("interpolation", "cav", "cav_classifiers")
"""Tables that are empty when their experiment was switched off; with no rows, their columns are not checked."""
EVAL_CONFIG = "eval_config.json"

EXAMPLE_CHARS = 360
"""Example texts are clipped to about this many characters: enough to judge content, short enough for a table."""

# NaN and NULL both mean "not applicable" in evaluate's tables (pandas writes NULL, numpy code may write NaN).
# if(isnan(x), NULL, x) turns NaN into NULL, so that averages skip it instead of becoming NaN. That needs the
# views' read_parquet(..., can_have_nan = true): pyarrow leaves NaN out of Parquet min/max statistics, and
# without the option DuckDB trusts them, decides no NaN can occur and folds isnan(x) to false
# (duckdb/duckdb#25521).

PER_TASK_SQL = """
-- generalisation: SC of movie descriptions per task, held-out movies first, then train (the gap shows overfitting)
SELECT split, task, n, elm, baseline, truth, random, elm_normalised, baseline_normalised
FROM evaluate_scores
WHERE entity_kind = 'movie' AND metric = 'sc'
ORDER BY split = 'train', task
"""

HEADLINE_GENERALISATION_SQL = """
-- generalisation: SC of movie descriptions, mean over tasks, held-out and train, ELM and baseline
WITH per_task AS (
    SELECT replace(split, 'heldout', 'held-out') AS split,
           if(isnan(elm), NULL, elm) AS elm,
           if(isnan(baseline), NULL, baseline) AS baseline,
           if(isnan(random), NULL, random) AS random,
           if(isnan(truth), NULL, truth) AS truth,
           if(isnan(elm_normalised), NULL, elm_normalised) AS elm_normalised,
           if(isnan(baseline_normalised), NULL, baseline_normalised) AS baseline_normalised
    FROM evaluate_scores
    WHERE entity_kind = 'movie' AND metric = 'sc'
)
SELECT 'generalisation' AS section, 'SC movies, ' || split || ', mean over tasks' AS name, 'elm' AS system,
       count(elm) AS n, avg(elm) AS value,
       avg(random) FILTER (WHERE elm IS NOT NULL) AS random, avg(truth) FILTER (WHERE elm IS NOT NULL) AS truth,
       -- pooled: the normalised mean, not the mean of per-task normalised scores, which a task whose
       -- references nearly coincide (truth ~ random) would blow up
       (avg(elm) - avg(random) FILTER (WHERE elm IS NOT NULL))
         / nullif(avg(truth) FILTER (WHERE elm IS NOT NULL) - avg(random) FILTER (WHERE elm IS NOT NULL), 0)
         AS normalised
FROM per_task GROUP BY split
UNION ALL
SELECT 'generalisation', 'SC movies, ' || split || ', mean over tasks', 'baseline',
       count(baseline), avg(baseline),
       avg(random) FILTER (WHERE baseline IS NOT NULL), avg(truth) FILTER (WHERE baseline IS NOT NULL),
       (avg(baseline) - avg(random) FILTER (WHERE baseline IS NOT NULL))
         / nullif(avg(truth) FILTER (WHERE baseline IS NOT NULL) - avg(random) FILTER (WHERE baseline IS NOT NULL), 0)
FROM per_task GROUP BY split HAVING count(baseline) > 0
ORDER BY name, system DESC
"""

HEADLINE_USERS_SQL = """
-- user profiles: BC on held-out users per user task (does the text rank movies the way the CF model does?)
WITH per_task AS (
    SELECT task, n,
           if(isnan(elm), NULL, elm) AS elm,
           if(isnan(baseline), NULL, baseline) AS baseline,
           if(isnan(random), NULL, random) AS random,
           if(isnan(truth), NULL, truth) AS truth,
           if(isnan(elm_normalised), NULL, elm_normalised) AS elm_normalised,
           if(isnan(baseline_normalised), NULL, baseline_normalised) AS baseline_normalised
    FROM evaluate_scores
    WHERE entity_kind = 'user' AND metric = 'bc' AND split = 'heldout'
)
SELECT 'user profiles' AS section, 'BC held-out users, ' || task AS name, 'elm' AS system,
       n, elm AS value, random, truth, elm_normalised AS normalised
FROM per_task
UNION ALL
SELECT 'user profiles', 'BC held-out users, ' || task, 'baseline', n, baseline, random, truth, baseline_normalised
FROM per_task WHERE baseline IS NOT NULL
ORDER BY name, system DESC
"""

HEADLINE_INTERPOLATION_SQL = """
-- interpolation (movies): mean SC over pairs at each weight a, ELM and baseline; normalised against the references
WITH pairs AS (
    SELECT alpha, system, pair, if(isnan(value), NULL, value) AS value, random, truth
    FROM evaluate_interpolation
    WHERE entity_kind = 'movie' AND metric = 'sc'
)
SELECT 'interpolation' AS section, 'SC movies, a = ' || printf('%.2f', alpha) AS name, system,
       count(DISTINCT pair) AS n, avg(value) AS value, any_value(random) AS random, any_value(truth) AS truth,
       (avg(value) - any_value(random)) / nullif(any_value(truth) - any_value(random), 0) AS normalised
FROM pairs
GROUP BY alpha, system
ORDER BY alpha, system DESC
"""

HEADLINE_CAV_SQL = """
-- CAVs: per attribute, how present the attribute is in the ELM's text at the smallest and the largest step,
-- and how well the linear classifier behind the CAV separates held-out entities
WITH scores AS (
    SELECT space, attribute, alpha, max(n) AS n,
           avg(if(isnan(attribute_score), NULL, attribute_score)) AS attribute_score
    FROM evaluate_cav
    GROUP BY space, attribute, alpha
), ends AS (
    SELECT space, attribute, min(alpha) AS lo, max(alpha) AS hi FROM scores GROUP BY space, attribute
)
SELECT 'cav' AS section, name, system, n, value, NULL::DOUBLE AS random, NULL::DOUBLE AS truth,
       NULL::DOUBLE AS normalised
FROM (
    SELECT s.attribute, s.space, 0 AS part, s.alpha,
           s.attribute || ' (' || s.space || '): score in text at a = ' || printf('%g', s.alpha) AS name,
           'elm' AS system, s.n, s.attribute_score AS value
    FROM scores s JOIN ends e ON s.space = e.space AND s.attribute = e.attribute AND s.alpha IN (e.lo, e.hi)
    UNION ALL
    SELECT attribute, space, 1, NULL,
           attribute || ' (' || space || '): classifier held-out acc.', 'classifier', n_heldout, heldout_accuracy
    FROM evaluate_cav_classifiers
)
ORDER BY attribute, space, part, alpha
"""

HEADLINE_SECTIONS = (HEADLINE_GENERALISATION_SQL, HEADLINE_USERS_SQL, HEADLINE_INTERPOLATION_SQL, HEADLINE_CAV_SQL)
"""headline.parquet is these queries' rows, in this order."""

INTERPOLATION_CURVE_SQL = """
-- interpolation: mean over pairs of SC (movies) or BC (users) at each weight a, per system, with the references
SELECT entity_kind, metric, system, alpha, count(DISTINCT pair) AS n_pairs,
       avg(if(isnan(value), NULL, value)) AS value, any_value(random) AS random, any_value(truth) AS truth
FROM evaluate_interpolation
GROUP BY entity_kind, metric, system, alpha
ORDER BY entity_kind, metric, system, alpha
"""

CAV_CURVE_SQL = """
-- CAVs: SC or BC and the attribute's score in the text at each step along the CAV, per attribute and space
SELECT space, entity_kind, attribute, metric, alpha, n, value, attribute_score, random, truth
FROM evaluate_cav
ORDER BY attribute, space, metric, alpha
"""

CAV_CLASSIFIERS_SQL = """
-- CAVs: the linear classifiers whose unit normals are the CAVs, and how well they separate held-out entities
SELECT space, attribute, n_pos, n_neg, n_heldout, train_accuracy, heldout_accuracy, heldout_balanced_accuracy
FROM evaluate_cav_classifiers
ORDER BY attribute, space
"""

EXAMPLES_SQL = """
-- examples: three held-out movies (a different task each) and one held-out user; every system's text side by side
WITH elm AS (
    SELECT entity_kind, entity_id, partner_id, task,
           dense_rank() OVER (PARTITION BY entity_kind ORDER BY entity_id) AS entity_rank,
           row_number() OVER (PARTITION BY entity_kind, entity_id ORDER BY task, partner_id) AS task_rank,
           count(*) OVER (PARTITION BY entity_kind, entity_id) AS n_tasks
    FROM evaluate_generations
    WHERE experiment = 'generalisation' AND split = 'heldout' AND system = 'elm'
), picked AS (
    SELECT * FROM elm
    WHERE entity_rank <= CASE entity_kind WHEN 'movie' THEN 3 ELSE 1 END
      AND task_rank = 1 + (entity_rank - 1) % n_tasks
)
SELECT p.entity_kind, p.entity_rank, g.entity_id, g.partner_id, g.task, g.system, g.title, g.prompt, g.output,
       g.sc, g.bc, g.nearest_cosine
FROM picked p JOIN evaluate_generations g
  ON g.entity_kind = p.entity_kind AND g.entity_id = p.entity_id AND g.task = p.task
 AND g.partner_id IS NOT DISTINCT FROM p.partner_id
WHERE g.experiment = 'generalisation' AND g.split = 'heldout'
ORDER BY p.entity_kind, p.entity_rank, CASE g.system WHEN 'elm' THEN 0 WHEN 'baseline' THEN 1 ELSE 2 END
"""

INTERPOLATION_EXAMPLE_SQL = """
-- one interpolation sequence: what the ELM and the title-reading baseline say at each weight a for one pair
-- (movies first, and a Forrest Gump pair when there is one, as in the paper)
WITH pick AS (
    SELECT entity_kind, entity_id, partner_id, task FROM evaluate_generations
    WHERE experiment = 'interpolation' AND system = 'elm'
    ORDER BY entity_kind, coalesce(title LIKE 'Forrest Gump%', false) DESC, entity_id, partner_id, task
    LIMIT 1
)
SELECT g.entity_kind, g.entity_id, g.partner_id, g.task, g.alpha, g.system, g.title, g.output, g.sc, g.bc,
       g.nearest_cosine,
       (SELECT any_value(i.pair) FROM evaluate_interpolation i
        WHERE i.entity_kind = g.entity_kind AND i.a_id = g.entity_id AND i.b_id = g.partner_id) AS pair
FROM evaluate_generations g JOIN pick p
  ON g.entity_kind = p.entity_kind AND g.entity_id = p.entity_id AND g.task = p.task
 AND g.partner_id IS NOT DISTINCT FROM p.partner_id
WHERE g.experiment = 'interpolation'
ORDER BY g.alpha, g.system DESC
"""

CAV_EXAMPLE_SQL = """
-- one CAV sequence: the ELM's text as one entity's vector moves along one attribute's CAV
WITH pick AS (
    SELECT space, attribute, entity_kind, entity_id, task FROM evaluate_generations
    WHERE experiment = 'cav' AND system = 'elm'
    ORDER BY attribute, space, entity_kind, entity_id, task
    LIMIT 1
)
SELECT g.space, g.attribute, g.entity_kind, g.entity_id, g.task, g.title, g.alpha, g.output, g.attribute_score,
       g.sc, g.bc, g.nearest_cosine
FROM evaluate_generations g JOIN pick p
  ON g.space = p.space AND g.attribute = p.attribute AND g.entity_kind = p.entity_kind
 AND g.entity_id = p.entity_id AND g.task = p.task
WHERE g.experiment = 'cav' AND g.system = 'elm'
ORDER BY g.alpha
"""

HOW_TO_READ = (
    "**Semantic consistency (SC)** encodes a generated text with the semantic encoder and takes its cosine with "
    "the semantic vector the ELM was given (for interpolations the interpolated vector, for CAV moves the moved "
    "one). **Behavioral consistency (BC)** asks whether a user-profile text ranks movies the way the "
    "collaborative-filtering model does: NDCG of the ranking by cosine between the encoded text and each movie's "
    "semantic vector, with the CF model's predicted ratings as relevance. Both come with two references measured "
    "the same way: **random** (the text written for a random other entity) and **truth** (the teacher's text for "
    "this entity). **Normalised** = (score - random) / (truth - random): 0 is no better than a random entity's "
    "text, 1 is as consistent as the teacher. The **baseline** is a text-only LLM that reads the movie's *title*; "
    "the **ELM** reads only a vector, so a baseline that wins is expected on known movies, and the ELM's point is "
    "that it can also describe vectors that belong to no movie (interpolations, CAV moves). **nearest cos.** is "
    "the cosine between the described vector and the closest real entity's: low values mean far from the data, "
    "where text is least reliable."
)

_CSS = (
    "body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;"
    "line-height:1.45;color:#222}h1,h2,h3{line-height:1.2}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;"
    "margin-top:1.8em}table{border-collapse:collapse;margin:.8em 0;font-size:.9em}th,td{border:1px solid #ccc;"
    "padding:.3em .6em;vertical-align:top}th{background:#f3f3f3}img{max-width:100%}code{background:#f3f3f3;"
    "padding:0 .2em;border-radius:3px}pre{background:#f6f6f6;padding:.8em;overflow-x:auto}"
)


class ReportError(ValueError):
    """The evaluate artifact cannot be reported: a table or a column this module reads is missing."""


# -----------------------------------------------------------------------------
# reading the evaluate artifact


def open_evaluate(evaluate_art: Artifact) -> tuple[duckdb.DuckDBPyConnection, set[str]]:
    """DuckDB with one view per evaluate table, named as ``elm sql`` names them; and the experiments not run.

    ReportError when a table or a column this module reads is missing. A table of a switched-off experiment
    (no rows) becomes an empty view with the expected columns, so every query runs and returns nothing.
    """
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    not_run = set()
    for table, columns in EVALUATE_TABLES.items():
        name = f"{table}.parquet"
        try:
            path = evaluate_art.file(name)
        except ArtifactError as e:
            raise ReportError(f"evaluate artifact {evaluate_art.version} has no {name} (in {evaluate_art.path}): "
                              f"is it an artifact of the evaluate stage?") from e
        meta = pq.ParquetFile(path).metadata
        have = set(meta.schema.names)
        view = f"evaluate_{table}"
        if table in OPTIONAL_EXPERIMENTS and meta.num_rows == 0:
            not_run.add(table)
            cols = ", ".join(f"NULL::{t} AS {c}" for c, t in columns.items())
            con.execute(f"CREATE VIEW {view} AS SELECT {cols} WHERE false")
            continue
        if missing := [c for c in columns if c not in have]:
            raise ReportError(f"evaluate artifact {evaluate_art.version}: {name} lacks the columns {missing} "
                              f"(it has {sorted(have)})")
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet({_sql_str(str(path))}, can_have_nan = true)")
    return con, not_run


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def query(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    return con.execute(sql).df()


HEADLINE_COLUMNS = {"section": "object", "name": "object", "system": "object", "n": "int64", "value": "float64",
                    "random": "float64", "truth": "float64", "normalised": "float64"}


def headline_table(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The rows of every HEADLINE_SECTIONS query, in order, with one set of column types."""
    parts = [p for p in (query(con, sql) for sql in HEADLINE_SECTIONS) if not p.empty]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(HEADLINE_COLUMNS))
    out = out[list(HEADLINE_COLUMNS)]
    out["n"] = out["n"].fillna(0)
    return out.astype(HEADLINE_COLUMNS)


# -----------------------------------------------------------------------------
# plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


METRIC_LABEL = {"sc": "SC", "bc": "BC"}
KIND_LABEL = {"movie": "movies", "user": "users"}
SYSTEM_STYLE = {"elm": ("ELM (reads the vector)", "C0"), "baseline": ("baseline (reads the title)", "C1")}


def plot_per_task(per_task: pd.DataFrame, path: Path) -> bool:
    """Horizontal bars of normalised SC per task on held-out movies; False (nothing written) without data."""
    d = per_task[per_task["split"] == "heldout"].sort_values("task", ascending=False)
    if d.empty:
        return False
    plt = _pyplot()
    y = list(range(len(d)))
    h = 0.4
    fig, ax = plt.subplots(figsize=(8.5, 1.6 + 0.34 * len(d)))
    has_baseline = d["baseline_normalised"].notna().any()
    ax.barh([v + (h / 2 if has_baseline else 0) for v in y], d["elm_normalised"], height=h,
            color=SYSTEM_STYLE["elm"][1], label=SYSTEM_STYLE["elm"][0])
    if has_baseline:
        ax.barh([v - h / 2 for v in y], d["baseline_normalised"], height=h, color=SYSTEM_STYLE["baseline"][1],
                label=SYSTEM_STYLE["baseline"][0])
    ax.axvline(0, ls="--", lw=1, color="grey", label="random (0)")
    ax.axvline(1, ls="--", lw=1, color="black", label="teacher (1)")
    ax.set_yticks(y, d["task"])
    # below-random tasks happen (an untrained ELM); keep the random line off the axis spine either way
    lowest = pd.concat([d["elm_normalised"], d["baseline_normalised"]]).min()
    ax.set_xlim(left=min(-0.1, lowest - 0.05) if pd.notna(lowest) else -0.1)
    ax.set_xlabel("normalised SC  (0 = a random movie's text, 1 = the teacher's text)")
    ax.set_title(f"SC per task, held-out movies (up to {int(d['n'].max())} per task)")
    ax.grid(axis="x", alpha=0.3)
    _save(fig, [ax], path)
    return True


def _save(fig, axes: list, path: Path) -> None:
    """One legend for the whole figure, below it, so that it never hides a line; then write and close."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, h)
    fig.tight_layout()
    fig.legend(list(seen.values()), list(seen), loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(4, len(seen)), fontsize=8, frameon=False)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)


def _references(ax, random: float, truth: float) -> None:
    if _finite(random):
        ax.axhline(random, ls="--", lw=1, color="grey", label="random")
    if _finite(truth):
        ax.axhline(truth, ls="--", lw=1, color="black", label="truth (teacher)")


def plot_interpolation(curve: pd.DataFrame, path: Path) -> bool:
    """SC (movies) / BC (users) against the interpolation weight, mean over pairs, one panel per kind and metric."""
    if curve.empty:
        return False
    plt = _pyplot()
    panels = list(curve.groupby(["entity_kind", "metric"], sort=True))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4), squeeze=False)
    for ax, ((kind, metric), d) in zip(axes[0], panels):
        # the ELM first, whatever the names sort to: it is what the figure is about
        for system in sorted(d["system"].unique(), key=lambda s: (s != "elm", s)):
            s = d[d["system"] == system]
            label, color = SYSTEM_STYLE.get(system, (system, None))
            ax.plot(s["alpha"], s["value"], "o-", color=color, label=label)
        _references(ax, d["random"].iloc[0], d["truth"].iloc[0])
        m = METRIC_LABEL.get(metric, metric)
        pairs = int(d["n_pairs"].max())
        ax.set_title(f"{KIND_LABEL.get(kind, kind)}: {m} (mean over {pairs} pair{'s' if pairs != 1 else ''})")
        ax.set_xlabel("interpolation weight a  (0 = A, 1 = B)")
        ax.set_ylabel(m)
        ax.grid(alpha=0.3)
    fig.suptitle("Interpolation: w = (1 - a) w_A + a w_B")
    _save(fig, list(axes[0]), path)
    return True


def plot_cav(curve: pd.DataFrame, path: Path) -> bool:
    """One panel per attribute (and space): SC or BC against the CAV step, and the attribute's score on a twin axis."""
    if curve.empty:
        return False
    plt = _pyplot()
    panels = list(curve.groupby(["attribute", "space"], sort=True))
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.4 * ncols, 3.9 * nrows), squeeze=False)
    twins = []
    for ax, ((attribute, space), d) in zip(axes.flat, panels):
        metrics = sorted(d["metric"].unique())
        for i, (metric, s) in enumerate(d.groupby("metric", sort=True)):
            ax.plot(s["alpha"], s["value"], "o-", color=f"C{i}", label=METRIC_LABEL.get(metric, metric))
            _references(ax, s["random"].iloc[0], s["truth"].iloc[0])
        ax.set_xlabel("step a along the CAV")
        ax.set_ylabel(" / ".join(METRIC_LABEL.get(m, m) for m in metrics))
        ax.grid(alpha=0.3)
        twin = ax.twinx()
        score = d.groupby("alpha", as_index=False)["attribute_score"].mean()
        twin.plot(score["alpha"], score["attribute_score"], "s:", color="C3", label="attribute score")
        twin.set_ylabel("attribute score in the text", color="C3")
        twin.set_ylim(0, 1)
        twins.append(twin)
        ax.set_title(f"{attribute} ({space})")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle("Concept activation vectors: w + a * CAV")
    _save(fig, list(axes.flat) + twins, path)
    return True


# -----------------------------------------------------------------------------
# the page


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _num(x: Any, digits: int = 3) -> str:
    if x is None or x is pd.NA:
        return "–"
    if isinstance(x, (int,)) and not isinstance(x, bool):
        return str(x)
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(f):
        return "–"
    return str(int(f)) if f.is_integer() and digits == 0 else f"{f:.{digits}f}"


_MD_SPECIAL = re.compile(r"([\\`*\[\]|])")


def md_text(s: Any) -> str:
    """Text made safe for a Markdown table cell or paragraph: one line, Markdown and HTML characters escaped.

    Generated text is not Markdown: an output with "<emb>" or "*" must show as written, not vanish or turn bold.
    """
    s = "" if s is None or (isinstance(s, float) and math.isnan(s)) else str(s)
    s = " ".join(s.split())
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", s)


def clip(s: Any, limit: int = EXAMPLE_CHARS) -> str:
    """Whitespace collapsed, cut at a word boundary near ``limit`` characters, with an ellipsis when cut."""
    s = "" if s is None or (isinstance(s, float) and math.isnan(s)) else " ".join(str(s).split())
    if len(s) <= limit:
        return s
    cut = s[:limit]
    if " " in cut[limit // 2:]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:") + " …"


def md_table(header: list[str], rows: list[list[str]], align: str = "") -> str:
    """A Markdown (GFM) table; ``align`` has one letter per column, l or r (default l). Cells must be escaped."""
    align = align.ljust(len(header), "l")
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


@dataclass
class _Page:
    """Everything the page shows, already computed."""

    evaluate: Artifact
    per_task: pd.DataFrame
    headline: pd.DataFrame
    classifiers: pd.DataFrame
    examples: pd.DataFrame
    interpolation_example: pd.DataFrame
    cav_example: pd.DataFrame
    not_run: set[str]
    plots: dict[str, bool] = field(default_factory=dict)
    eval_config: dict | None = None


def _headline_md(h: pd.DataFrame) -> str:
    if h.empty:
        return "No headline figures: the evaluate artifact has no scores."
    rows = [[md_text(r.section), md_text(r.name), md_text(r.system), str(r.n), _num(r.value), _num(r.random),
             _num(r.truth), _num(r.normalised)] for r in h.itertuples()]
    return md_table(["section", "measure", "system", "n", "value", "random", "truth", "normalised"], rows, "lllrrrrr")


def _per_task_md(per_task: pd.DataFrame) -> str:
    held = per_task[per_task["split"] == "heldout"]
    train = per_task[per_task["split"] == "train"][["task", "elm_normalised"]].rename(
        columns={"elm_normalised": "elm_normalised_train"})
    d = held.merge(train, on="task", how="outer").sort_values("task")
    if d.empty:
        return "No movie SC scores in this evaluate artifact."
    rows = [[f"`{r.task}`", _num(r.n, 0), _num(r.elm), _num(r.baseline), _num(r.random), _num(r.truth),
             _num(r.elm_normalised), _num(r.baseline_normalised), _num(r.elm_normalised_train)]
            for r in d.itertuples()]
    return md_table(["task", "n", "ELM SC", "baseline SC", "random", "truth", "ELM norm.", "baseline norm.",
                     "ELM norm. (train)"], rows, "lrrrrrrrr")


def _system_label(system: str) -> str:
    return {"elm": "ELM (reads the vector)", "baseline": "baseline (reads the title)",
            "truth": "teacher (truth)"}.get(system, system)


def _entity_name(kind: str, entity_id: Any, title: Any) -> str:
    t = "" if title is None or (isinstance(title, float) and math.isnan(title)) else str(title)
    return t or f"{kind} {entity_id}"


def _examples_md(ex: pd.DataFrame) -> str:
    if ex.empty:
        return "No held-out generations in this evaluate artifact."
    out = []
    for (kind, _, entity_id, task), d in ex.groupby(["entity_kind", "entity_rank", "entity_id", "task"], sort=False):
        titles = [t for t in d["title"] if isinstance(t, str) and t]
        metric = "BC" if kind == "user" else "SC"
        col = "bc" if kind == "user" else "sc"
        out.append(f"### {md_text(_entity_name(kind, entity_id, titles[0] if titles else ''))}: task `{task}`")
        prompt = d.loc[d["system"] == "elm", "prompt"]
        if len(prompt) and isinstance(prompt.iloc[0], str):
            out.append(f"ELM prompt: `{clip(prompt.iloc[0], 200).replace('`', chr(39))}`")
        rows = [[_system_label(r.system), _num(getattr(r, col)), md_text(clip(r.output))] for r in d.itertuples()]
        out.append(md_table(["system", metric, "text"], rows, "lrl"))
    return "\n\n".join(out)


def _interpolation_example_md(ex: pd.DataFrame) -> str:
    if ex.empty:
        return "No interpolation generations stored."
    first = ex.iloc[0]
    kind = first["entity_kind"]
    col, metric = ("bc", "BC") if kind == "user" else ("sc", "SC")
    pair = first["pair"] if isinstance(first["pair"], str) and first["pair"] else \
        f"{_entity_name(kind, first['entity_id'], first['title'])} + {kind} {first['partner_id']}"
    lines = [f"### {md_text(pair)}: task `{first['task']}`"]
    by = {s: d.set_index("alpha") for s, d in ex.groupby("system")}
    elm, base = by.get("elm"), by.get("baseline")
    rows = []
    for a in sorted(ex["alpha"].unique()):
        e = elm.loc[a] if elm is not None and a in elm.index else None
        b = base.loc[a] if base is not None and a in base.index else None
        e = e.iloc[0] if isinstance(e, pd.DataFrame) else e
        b = b.iloc[0] if isinstance(b, pd.DataFrame) else b
        rows.append([_num(a, 2),
                     md_text(clip(e["output"])) if e is not None else "–", _num(e[col]) if e is not None else "–",
                     _num(e["nearest_cosine"]) if e is not None else "–",
                     md_text(clip(b["output"])) if b is not None else "–", _num(b[col]) if b is not None else "–"])
    lines.append(md_table(["a", "ELM text", f"ELM {metric}", "nearest cos.", "baseline text", f"baseline {metric}"],
                          rows, "rlrrlr"))
    return "\n\n".join(lines)


def _cav_example_md(ex: pd.DataFrame) -> str:
    if ex.empty:
        return "No CAV generations stored."
    first = ex.iloc[0]
    kind = first["entity_kind"]
    col, metric = ("bc", "BC") if kind == "user" else ("sc", "SC")
    name = _entity_name(kind, first["entity_id"], first["title"])
    lines = [f"### {md_text(name)} moved along `{first['attribute']}` ({md_text(first['space'])}): "
             f"task `{first['task']}`"]
    rows = [[_num(r.alpha, 2), _num(r.attribute_score), _num(getattr(r, col)), _num(r.nearest_cosine),
             md_text(clip(r.output))] for r in ex.itertuples()]
    lines.append(md_table(["a", "attribute score", metric, "nearest cos.", "ELM text"], rows, "rrrrl"))
    return "\n\n".join(lines)


def _classifiers_md(c: pd.DataFrame) -> str:
    rows = [[f"`{r.attribute}`", md_text(r.space), str(r.n_pos), str(r.n_neg), str(r.n_heldout),
             _num(r.train_accuracy), _num(r.heldout_accuracy), _num(r.heldout_balanced_accuracy)]
            for r in c.itertuples()]
    return md_table(["attribute", "space", "positives", "negatives", "held-out", "train acc.", "held-out acc.",
                     "held-out balanced acc."], rows, "llrrrrrr")


def _figure(name: str, alt: str, written: bool, why_not: str) -> str:
    return f"![{alt}]({name})" if written else f"*No plot: {why_not}.*"


def _render_markdown(p: _Page) -> str:
    ev = p.evaluate
    inputs = ", ".join(f"{k} `{v}`" for k, v in sorted(ev.manifest.get("inputs", {}).items())) or "none recorded"
    model = ev.summary.get("model")
    parts = [
        "# ELM evaluation report",
        f"evaluate `{ev.version}` (created {ev.manifest.get('created_at', '?')}), made from {inputs}"
        + (f"; model `{md_text(model)}`" if model else "") + ".",
        "## How to read this",
        HOW_TO_READ,
        "## Headline",
        _headline_md(p.headline),
        "## Generalisation: SC per task on held-out movies",
        _figure(PER_TASK_PNG, "Normalised SC per task, held-out movies", p.plots.get(PER_TASK_PNG, False),
                "no held-out movie SC scores"),
        _per_task_md(p.per_task),
        "## Interpolation",
    ]
    if "interpolation" in p.not_run:
        parts.append("Not run: this evaluate artifact has no interpolation results (the experiment was switched off).")
    else:
        parts += [_figure(INTERPOLATION_PNG, "SC and BC against the interpolation weight",
                          p.plots.get(INTERPOLATION_PNG, False), "no interpolation results"),
                  _interpolation_example_md(p.interpolation_example)]
    parts.append("## Concept activation vectors (CAV)")
    if "cav" in p.not_run:
        parts.append("Not run: this evaluate artifact has no CAV results (the experiment was switched off).")
    else:
        parts.append(_figure(CAV_PNG, "SC or BC and attribute score against the CAV step", p.plots.get(CAV_PNG, False),
                             "no CAV results"))
    parts.append("### CAV classifiers")
    parts.append("Not run: no CAV classifiers in this evaluate artifact." if p.classifiers.empty
                 else _classifiers_md(p.classifiers))
    if "cav" not in p.not_run:
        parts.append(_cav_example_md(p.cav_example))
    parts += ["## Examples: held-out entities",
              "Every system on the same entity and task; texts clipped to about "
              f"{EXAMPLE_CHARS} characters.",
              _examples_md(p.examples)]
    if p.eval_config is not None:
        parts += ["## Evaluation settings", "```json\n" + json.dumps(p.eval_config, indent=2, sort_keys=True,
                                                                      default=str) + "\n```"]
    return "\n\n".join(parts) + "\n"


# -----------------------------------------------------------------------------
# HTML


def markdown_to_html(md: str, title: str = "ELM evaluation report") -> str:
    """A standalone HTML page of the Markdown this module writes (Python-Markdown when installed, else a small
    converter for exactly that subset)."""
    try:
        import markdown
    except ImportError:
        body = simple_markdown(md)
    else:
        body = markdown.markdown(md, extensions=["tables", "fenced_code"], output_format="html")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


_INLINE = re.compile(
    r"\\(?P<esc>[!-/:-@\[-`{-~])"
    r"|`(?P<code>[^`]*)`"
    r"|!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)"
    r"|\[(?P<text>[^\]]*)\]\((?P<href>[^)\s]+)\)"
    r"|\*\*(?P<bold>.+?)\*\*"
    r"|\*(?P<em>[^*\s][^*]*?)\*"
    r"|(?P<entity>&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);)"
)


def _inline(s: str) -> str:
    out, pos = [], 0
    for m in _INLINE.finditer(s):
        out.append(html.escape(s[pos:m.start()], quote=False))
        g = m.groupdict()
        if g["esc"] is not None:
            out.append(html.escape(g["esc"], quote=False))
        elif g["code"] is not None:
            out.append(f"<code>{html.escape(g['code'], quote=False)}</code>")
        elif g["src"] is not None:
            out.append(f'<img alt="{html.escape(g["alt"])}" src="{html.escape(g["src"])}" />')
        elif g["href"] is not None:
            out.append(f'<a href="{html.escape(g["href"])}">{_inline(g["text"])}</a>')
        elif g["bold"] is not None:
            out.append(f"<strong>{_inline(g['bold'])}</strong>")
        elif g["em"] is not None:
            out.append(f"<em>{_inline(g['em'])}</em>")
        else:
            out.append(g["entity"])
        pos = m.end()
    out.append(html.escape(s[pos:], quote=False))
    return "".join(out)


def _cells(row: str) -> list[str]:
    row = row.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    return [c.strip() for c in re.split(r"(?<!\\)\|", row)]


def simple_markdown(md: str) -> str:
    """HTML of the Markdown subset this module writes: headings, paragraphs, GFM tables, fenced code, inline
    code, bold, emphasis, links, images, backslash escapes and entities. Not a general Markdown converter."""
    lines = md.split("\n")
    out: list[str] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            out.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            flush()
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append(f"<pre><code>{html.escape(chr(10).join(lines[i + 1:j]), quote=False)}</code></pre>")
            i = j + 1
            continue
        if m := re.match(r"^(#{1,6}) (.*)$", line):
            flush()
            k = len(m.group(1))
            out.append(f"<h{k}>{_inline(m.group(2))}</h{k}>")
        elif line.startswith("|") and i + 1 < len(lines) and re.match(r"^\|[\s:|-]+\|$", lines[i + 1].strip()):
            flush()
            header = _cells(line)
            aligns = ["right" if c.endswith(":") else "" for c in _cells(lines[i + 1])]
            style = [f' style="text-align: {a};"' if a else "" for a in aligns]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            th = "".join(f"<th{style[k] if k < len(style) else ''}>{_inline(c)}</th>" for k, c in enumerate(header))
            body = "".join("<tr>" + "".join(f"<td{style[k] if k < len(style) else ''}>{_inline(c)}</td>"
                                            for k, c in enumerate(r)) + "</tr>\n" for r in rows)
            out.append(f"<table>\n<thead><tr>{th}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>")
            continue
        elif not line.strip():
            flush()
        else:
            para.append(line.strip())
        i += 1
    flush()
    return "\n".join(out)


# -----------------------------------------------------------------------------
# the stage


def _json_safe(x: Any) -> Any:
    if x is None or x is pd.NA:
        return None
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if hasattr(x, "item"):  # numpy scalars
        return _json_safe(x.item())
    return x


def _records(df: pd.DataFrame) -> list[dict]:
    return [{k: _json_safe(v) for k, v in r.items()} for r in df.to_dict("records")]


def _key_numbers(h: pd.DataFrame, not_run: set[str]) -> dict:
    def r4(x: Any) -> float | None:
        x = _json_safe(x)
        return None if x is None else round(x, 4)

    def pick(name: str, system: str, col: str) -> float | None:
        hit = h[(h["name"] == name) & (h["system"] == system)]
        return r4(hit[col].iloc[0]) if len(hit) else None

    held, train = "SC movies, held-out, mean over tasks", "SC movies, train, mean over tasks"
    users = h[(h["section"] == "user profiles") & (h["system"] == "elm")]
    return {
        "sc_normalised_heldout_movies_elm": pick(held, "elm", "normalised"),
        "sc_normalised_heldout_movies_baseline": pick(held, "baseline", "normalised"),
        "sc_heldout_movies_elm": pick(held, "elm", "value"),
        "sc_train_movies_elm": pick(train, "elm", "value"),
        "bc_normalised_heldout_users_elm": r4(users["normalised"].mean()) if len(users) else None,
        "interpolation": "not run" if "interpolation" in not_run else "run",
        "cav": "not run" if "cav" in not_run else "run",
    }


def build_report(evaluate_art: Artifact, store: ArtifactStore) -> tuple[Artifact, bool]:
    """The report artifact of an evaluate artifact: tables, plots and the page. Returns (artifact, cache_hit).

    ReportError when the evaluate artifact lacks a table or a column the report reads.
    """

    def build(work: WorkDir) -> None:
        con, not_run = open_evaluate(evaluate_art)
        per_task = query(con, PER_TASK_SQL)
        headline = headline_table(con)
        config_path = evaluate_art.path / EVAL_CONFIG
        page = _Page(
            evaluate=evaluate_art, per_task=per_task, headline=headline,
            classifiers=query(con, CAV_CLASSIFIERS_SQL), examples=query(con, EXAMPLES_SQL),
            interpolation_example=query(con, INTERPOLATION_EXAMPLE_SQL), cav_example=query(con, CAV_EXAMPLE_SQL),
            not_run=not_run, eval_config=json.loads(config_path.read_text()) if config_path.exists() else None,
        )
        per_task.to_parquet(work.path / PER_TASK_FILE, index=False)
        headline.to_parquet(work.path / HEADLINE_FILE, index=False)
        page.plots = {
            PER_TASK_PNG: plot_per_task(per_task, work.path / PER_TASK_PNG),
            INTERPOLATION_PNG: plot_interpolation(query(con, INTERPOLATION_CURVE_SQL), work.path / INTERPOLATION_PNG),
            CAV_PNG: plot_cav(query(con, CAV_CURVE_SQL), work.path / CAV_PNG),
        }
        md = _render_markdown(page)
        (work.path / REPORT_MD).write_text(md)
        (work.path / REPORT_HTML).write_text(markdown_to_html(md, f"ELM report: evaluate {evaluate_art.version}"))
        work.summary.update({
            "evaluate": evaluate_art.version,
            "headline": _key_numbers(headline, not_run),
            "plots": sorted(k for k, ok in page.plots.items() if ok),
            "not_run": sorted(not_run),
        })
        log.info("report: %d tasks, %d headline rows, plots %s", per_task["task"].nunique(), len(headline),
                 work.summary["plots"])

    return store.produce(STAGE, inputs={"evaluate": evaluate_art.version}, config={}, code_version=CODE_VERSION,
                         build=build)


# -----------------------------------------------------------------------------
# reading a report artifact


def report_tables(report_art: Artifact) -> dict[str, list[dict]]:
    """The per-task and headline tables as JSON-safe rows (NaN -> None), e.g. for Prefect table artifacts."""
    return {"per_task": _records(pd.read_parquet(report_art.file(PER_TASK_FILE))),
            "headline": _records(pd.read_parquet(report_art.file(HEADLINE_FILE)))}


def report_markdown(report_art: Artifact) -> str:
    """The report page as Markdown (report.md)."""
    return report_art.file(REPORT_MD).read_text()


def _display_path(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def headline_text(report_art: Artifact) -> str:
    """The headline table as aligned plain text, and where the page is."""
    h = pd.read_parquet(report_art.file(HEADLINE_FILE))
    lines = [f"report {report_art.version} of evaluate {report_art.summary.get('evaluate', '?')}: headline "
             "(normalised: 0 = random, 1 = teacher)"]
    if h.empty:
        lines.append("  no headline figures: the evaluate artifact has no scores")
    else:
        w = max(len("measure"), int(h["name"].str.len().max()))
        lines.append(f"  {'section':<15}{'measure':<{w + 2}}{'system':<12}{'n':>5}{'value':>9}{'random':>9}"
                     f"{'truth':>9}{'normalised':>12}")
        prev = None
        for r in h.itertuples():
            section = r.section if r.section != prev else ""
            prev = r.section
            lines.append(f"  {section:<15}{r.name:<{w + 2}}{r.system:<12}{r.n:>5}{_num(r.value):>9}"
                         f"{_num(r.random):>9}{_num(r.truth):>9}{_num(r.normalised):>12}")
    not_run = report_art.summary.get("not_run", [])
    if not_run:
        lines.append(f"  not run: {', '.join(not_run)}")
    lines.append(f"report: {_display_path(report_art.path / REPORT_HTML)}")
    return "\n".join(lines)
