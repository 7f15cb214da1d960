"""The report's tables as DuckDB SQL over an evaluate artifact, and the views those queries read.

Every table is a DuckDB query (the ``*_SQL`` constants below) over views named the way ``elm sql`` names the
latest evaluate artifact's tables (``evaluate_scores``, ``evaluate_generations``, ``evaluate_interpolation``,
``evaluate_cav``, ``evaluate_cav_classifiers``), so any of them can be pasted into ``elm sql`` as it is. Here
the views point at the evaluate version being reported, not at ``latest``, and read Parquet with
``can_have_nan = true`` (see the note on NaN below), as ``elm sql``'s views do.
"""

from __future__ import annotations

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from elm.artifacts import Artifact, ArtifactError

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
        "elm_normalised": "DOUBLE", "baseline_n": "BIGINT", "baseline_truth": "DOUBLE", "baseline_random": "DOUBLE",
        "baseline_normalised": "DOUBLE",
    },
    "interpolation": {
        "entity_kind": "VARCHAR", "pair": "VARCHAR", "a_id": "BIGINT", "b_id": "BIGINT", "alpha": "DOUBLE",
        "system": "VARCHAR", "metric": "VARCHAR", "value": "DOUBLE", "random": "DOUBLE", "truth": "DOUBLE",
    },
    "cav": {
        "space": "VARCHAR", "entity_kind": "VARCHAR", "attribute": "VARCHAR", "alpha": "DOUBLE", "metric": "VARCHAR",
        "n": "BIGINT", "value": "DOUBLE", "value_low": "DOUBLE", "value_high": "DOUBLE", "attribute_score": "DOUBLE",
        "score_low": "DOUBLE", "score_high": "DOUBLE", "random": "DOUBLE", "truth": "DOUBLE",
    },
    "cav_classifiers": {
        "space": "VARCHAR", "attribute": "VARCHAR", "n_pos": "BIGINT", "n_neg": "BIGINT", "n_heldout": "BIGINT",
        "train_accuracy": "DOUBLE", "heldout_accuracy": "DOUBLE", "heldout_balanced_accuracy": "DOUBLE",
    },
}
"""The evaluate artifact's tables (<name>.parquet) and the columns this module reads from each."""
OPTIONAL_EXPERIMENTS = ("interpolation", "cav", "cav_classifiers")
"""Tables that are empty when their experiment was switched off; with no rows, their columns are not checked."""

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
           if(isnan(baseline_random), NULL, baseline_random) AS baseline_random,
           if(isnan(baseline_truth), NULL, baseline_truth) AS baseline_truth
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
-- the baseline answers only some of the movies: its references are the teacher's on those same movies
SELECT 'generalisation', 'SC movies, ' || split || ', mean over tasks', 'baseline',
       count(baseline), avg(baseline),
       avg(baseline_random) FILTER (WHERE baseline IS NOT NULL), avg(baseline_truth) FILTER (WHERE baseline IS NOT NULL),
       (avg(baseline) - avg(baseline_random) FILTER (WHERE baseline IS NOT NULL))
         / nullif(avg(baseline_truth) FILTER (WHERE baseline IS NOT NULL)
                  - avg(baseline_random) FILTER (WHERE baseline IS NOT NULL), 0)
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
SELECT space, entity_kind, attribute, metric, alpha, n, value, value_low, value_high, attribute_score,
       score_low, score_high, random, truth
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


# -----------------------------------------------------------------------------
# reading the evaluate artifact


class ReportError(ValueError):
    """The evaluate artifact cannot be reported: a table or a column this module reads is missing."""


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
