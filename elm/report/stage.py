"""The report stage: one page that says how well the ELM reads vectors, computed with SQL over an evaluate artifact.

The page always shows the random and ground-truth references next to a score (docs/METHOD.md, "Metrics"): a raw SC
of 0.4 means nothing until one knows that a random movie's text scores 0.3 and the teacher's own text 0.5.

The queries are in ``elm.report.queries``, the plots in ``elm.report.plots``, the page in ``elm.report.page``
(Markdown) and ``elm.report.html``; the artifact's files are listed in ``elm.report.files``.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd

from elm.artifacts import Artifact, ArtifactStore, WorkDir
from elm.evaluate.controls import controls_text
from elm.lineage import StageSpec, publish, read_tables
from elm.report.files import (
    CONTROLS_FILE,
    REPORT_FILES,
    CAV_PNG,
    HEADLINE_FILE,
    HISTORY_FILE,
    HISTORY_PNG,
    INTERPOLATION_PNG,
    PER_TASK_FILE,
    PER_TASK_PNG,
    REPORT_HTML,
    REPORT_MD,
)
from elm.report.history import history_table, plot_history
from elm.report.html import markdown_to_html
from elm.report.intervals import curve_intervals, headline_intervals, per_task_intervals
from elm.report.page import _num, _Page, _render_markdown, with_interval
from elm.report.plots import plot_cav, plot_interpolation, plot_per_task
from elm.report.queries import (
    CAV_CLASSIFIERS_SQL,
    CAV_CURVE_SQL,
    CAV_EXAMPLE_SQL,
    EXAMPLES_SQL,
    INTERPOLATION_CURVE_SQL,
    INTERPOLATION_EXAMPLE_SQL,
    PER_TASK_SQL,
    headline_table,
    open_evaluate,
    query,
)

log = logging.getLogger(__name__)

REPORT = StageSpec("report", inputs=("evaluate",), files=tuple(REPORT_FILES),
                   code_version="4")  # 2: the controls section and controls.parquet; 3: per-task intervals; 4: history
EVAL_CONFIG = "eval_config.json"


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


def _with_intervals(curve: pd.DataFrame, gens: pd.DataFrame) -> pd.DataFrame:
    if curve.empty:
        return curve
    return curve.merge(curve_intervals(gens), on=["entity_kind", "metric", "system", "alpha"], how="left")


def build_report(evaluate_art: Artifact, store: ArtifactStore) -> tuple[Artifact, bool]:
    """The report artifact of an evaluate artifact: tables, plots and the page. Returns (artifact, cache_hit).

    ReportError when the evaluate artifact lacks a table or a column the report reads.
    """

    def build(work: WorkDir) -> None:
        con, not_run = open_evaluate(evaluate_art)
        per_task = query(con, PER_TASK_SQL)
        gens = read_tables(evaluate_art, ("generations",))["generations"]
        per_task = per_task.merge(per_task_intervals(gens), on=["split", "task"], how="left")
        cav_curve = query(con, CAV_CURVE_SQL)
        headline = headline_intervals(headline_table(con), gens, cav_curve)
        config_path = evaluate_art.file(EVAL_CONFIG) if (evaluate_art.path / EVAL_CONFIG).exists() else None
        controls = read_tables(evaluate_art, ("controls",), optional=("controls",)).get("controls")
        if controls is not None:
            controls.to_parquet(work.path / CONTROLS_FILE, index=False)
        page = _Page(
            evaluate=evaluate_art, per_task=per_task, headline=headline,
            classifiers=query(con, CAV_CLASSIFIERS_SQL), examples=query(con, EXAMPLES_SQL),
            interpolation_example=query(con, INTERPOLATION_EXAMPLE_SQL), cav_example=query(con, CAV_EXAMPLE_SQL),
            not_run=not_run, eval_config=json.loads(config_path.read_text()) if config_path else None,
            controls=controls, history=history_table(store, evaluate_art),
        )
        page.history.to_parquet(work.path / HISTORY_FILE, index=False)
        per_task.to_parquet(work.path / PER_TASK_FILE, index=False)
        headline.to_parquet(work.path / HEADLINE_FILE, index=False)
        page.plots = {
            PER_TASK_PNG: plot_per_task(per_task, work.path / PER_TASK_PNG),
            INTERPOLATION_PNG: plot_interpolation(_with_intervals(query(con, INTERPOLATION_CURVE_SQL), gens),
                                                  work.path / INTERPOLATION_PNG),
            CAV_PNG: plot_cav(cav_curve, work.path / CAV_PNG),
            HISTORY_PNG: plot_history(page.history, work.path / HISTORY_PNG),
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

    return publish(store, REPORT, {"evaluate": evaluate_art}, {}, build)


# -----------------------------------------------------------------------------
# reading a report artifact


def _interval(lo: Any, hi: Any) -> str | None:
    lo, hi = _json_safe(lo), _json_safe(hi)
    return None if lo is None or hi is None else f"[{lo:.3f}, {hi:.3f}]"


def report_tables(report_art: Artifact) -> dict[str, list[dict]]:
    """The headline, per-task and history tables as JSON-safe rows (NaN -> None), for reading on a screen (Prefect
    table artifacts): numbers rounded to 3 digits, the key columns (what, then the normalised score) first,
    intervals as one "[low, high]" text column, so a table fits a 1280 px page."""
    h = pd.read_parquet(report_art.file(HEADLINE_FILE))
    headline = pd.DataFrame({
        "measure": h["name"], "system": h["system"], "normalised": h["normalised"],
        "normalised_95": [_interval(a, b) for a, b in zip(h.get("normalised_low", [None] * len(h)),
                                                          h.get("normalised_high", [None] * len(h)))],
        "value": h["value"], "random": h["random"], "truth": h["truth"], "n": h["n"], "section": h["section"]})
    p = pd.read_parquet(report_art.file(PER_TASK_FILE))
    per_task = p[["task", "split", "elm_normalised", "baseline_normalised", "elm", "baseline", "random", "truth", "n"]]
    out = {"headline": _records(headline.round(3)), "per_task": _records(per_task.round(3))}
    if (report_art.path / HISTORY_FILE).exists():
        hist = pd.read_parquet(report_art.file(HISTORY_FILE))
        hist = hist.assign(made=hist["created_at"].dt.strftime("%Y-%m-%d %H:%M UTC"),
                           evaluate=hist["evaluate"].str[:12], train=hist["train"].str[:12])
        out["history"] = _records(hist[["made", "evaluate", "sc_normalised_elm", "sc_normalised_baseline",
                                        "bc_normalised_elm", "train", "tasks"]].round(3))
    return out


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
        lines.append(f"  {'section':<15}{'measure':<{w + 2}}{'system':<12}{'n':>5}{'value [95% interval]':>25}"
                     f"{'random':>9}{'truth':>9}{'normalised [95% interval]':>28}")
        prev = None
        for r in h.itertuples():
            section = r.section if r.section != prev else ""
            prev = r.section
            value = with_interval(r.value, getattr(r, "value_low", None), getattr(r, "value_high", None))
            norm = with_interval(r.normalised, getattr(r, "normalised_low", None), getattr(r, "normalised_high", None))
            lines.append(f"  {section:<15}{r.name:<{w + 2}}{r.system:<12}{r.n:>5}{value:>25}"
                         f"{_num(r.random):>9}{_num(r.truth):>9}{norm:>28}")
    if (report_art.path / CONTROLS_FILE).exists():
        lines.append(controls_text(pd.read_parquet(report_art.file(CONTROLS_FILE))))
    not_run = report_art.summary.get("not_run", [])
    if not_run:
        lines.append(f"  not run: {', '.join(not_run)}")
    lines.append(f"report: {_display_path(report_art.path / REPORT_HTML)}")
    return "\n".join(lines)
