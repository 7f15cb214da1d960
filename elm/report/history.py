"""The report's history: the headline numbers of every evaluate version in the store, oldest first.

One DuckDB query over ``elm sql``'s views (``evaluate_scores_all`` and ``manifests``), so it can be pasted
into ``elm sql`` as it is. A report shows the evaluations made up to and including the one it reports: the
store only grows, so the history of a report stays what it was when it was built (its cache hit is honest),
and a scheduled re-evaluation that lands a new evaluate version adds one row to the next report.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from elm.artifacts import Artifact, ArtifactStore

HISTORY_SQL = """
-- history: per evaluate version, pooled normalised SC on held-out movies (ELM, baseline) and mean normalised
-- BC on held-out users (ELM), with when it was made and which train artifact it scored
WITH s AS (
    SELECT version, entity_kind, metric, split,
           if(isnan(elm), NULL, elm) AS elm, if(isnan(baseline), NULL, baseline) AS baseline,
           if(isnan(random), NULL, random) AS random, if(isnan(truth), NULL, truth) AS truth,
           if(isnan(elm_normalised), NULL, elm_normalised) AS elm_normalised
    FROM evaluate_scores_all
), movies AS (
    SELECT version, count(elm) AS tasks, avg(elm) AS sc_elm,
           (avg(elm) - avg(random) FILTER (WHERE elm IS NOT NULL))
             / nullif(avg(truth) FILTER (WHERE elm IS NOT NULL) - avg(random) FILTER (WHERE elm IS NOT NULL), 0)
             AS sc_normalised_elm,
           (avg(baseline) - avg(random) FILTER (WHERE baseline IS NOT NULL))
             / nullif(avg(truth) FILTER (WHERE baseline IS NOT NULL)
                      - avg(random) FILTER (WHERE baseline IS NOT NULL), 0) AS sc_normalised_baseline
    FROM s WHERE entity_kind = 'movie' AND metric = 'sc' AND split = 'heldout' GROUP BY version
), users AS (
    SELECT version, avg(elm_normalised) AS bc_normalised_elm
    FROM s WHERE entity_kind = 'user' AND metric = 'bc' AND split = 'heldout' GROUP BY version
)
SELECT m.created_at, m.version AS evaluate, m.inputs ->> 'train' AS train,
       mv.sc_normalised_elm, mv.sc_normalised_baseline, u.bc_normalised_elm, mv.sc_elm, mv.tasks
FROM manifests m
LEFT JOIN movies mv ON mv.version = m.version
LEFT JOIN users u ON u.version = m.version
WHERE m.stage = 'evaluate'
  AND m.created_at <= (SELECT max(created_at) FROM manifests WHERE stage = 'evaluate' AND version = $upto)
ORDER BY m.created_at, m.version
"""

HISTORY_COLUMNS = ["created_at", "evaluate", "train", "sc_normalised_elm", "sc_normalised_baseline",
                   "bc_normalised_elm", "sc_elm", "tasks"]


def history_table(store: ArtifactStore, upto: Artifact) -> pd.DataFrame:
    """One row per evaluate version in ``store`` made no later than ``upto``, oldest first (HISTORY_SQL)."""
    from elm.sql import connect

    con = connect(store, stages=("evaluate",), tables=("scores",))
    try:
        views = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "evaluate_scores_all" not in views:
            return pd.DataFrame(columns=HISTORY_COLUMNS)
        h = con.execute(HISTORY_SQL, {"upto": upto.version}).df()
    finally:
        con.close()
    h["created_at"] = pd.to_datetime(h["created_at"], utc=True)
    h["tasks"] = h["tasks"].fillna(0).astype("int64")
    return h[HISTORY_COLUMNS]


def plot_history(h: pd.DataFrame, path: Path) -> bool:
    """Normalised SC (held-out movies; ELM, baseline) and BC (held-out users; ELM) per evaluation over time."""
    series = {"sc_normalised_elm": ("ELM: SC held-out movies", "C0", "o-"),
              "sc_normalised_baseline": ("baseline: SC held-out movies", "C1", "s--"),
              "bc_normalised_elm": ("ELM: BC held-out users", "C2", "^-")}
    if h.empty or not h[list(series)].notna().any().any():
        return False
    from elm.report.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 3.6))
    x = list(range(1, len(h) + 1))  # evaluations in order; dates as tick labels (runs can be seconds apart)
    for col, (label, color, fmt) in series.items():
        if h[col].notna().any():
            ax.plot(x, h[col], fmt, color=color, label=label)
    ax.axhline(0, ls="--", lw=1, color="grey", label="random (0)")
    ax.axhline(1, ls="--", lw=1, color="black", label="teacher (1)")
    ax.set_xticks(x, [f"{i}\n{t:%m-%d %H:%M}" for i, t in zip(x, h["created_at"])], fontsize=7)
    ax.set_xlim(0.5, len(h) + 0.5)
    ax.set_xlabel("evaluation (UTC)")
    ax.set_ylabel("normalised")
    ax.set_title(f"Every evaluation in the store ({len(h)}): normalised SC and BC over time")
    ax.grid(alpha=0.3)
    _save(fig, [ax], path)
    return True
