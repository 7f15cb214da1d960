"""The report's plots (matplotlib, Agg): normalised SC per task, the interpolation curves, the CAV steps.

Each returns False and writes nothing when there is no data to plot (an experiment that was not run).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd


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

    def err(system: str):
        """95% intervals as error bars, where the per-task table has them (elm/report/intervals.py)."""
        lo, hi = f"{system}_normalised_low", f"{system}_normalised_high"
        if lo not in d or not d[lo].notna().any():
            return None
        v = d[f"{system}_normalised"]
        return [(v - d[lo]).clip(lower=0).fillna(0), (d[hi] - v).clip(lower=0).fillna(0)]

    ax.barh([v + (h / 2 if has_baseline else 0) for v in y], d["elm_normalised"], height=h,
            color=SYSTEM_STYLE["elm"][1], label=SYSTEM_STYLE["elm"][0], xerr=err("elm"),
            error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "black"})
    if has_baseline:
        ax.barh([v - h / 2 for v in y], d["baseline_normalised"], height=h, color=SYSTEM_STYLE["baseline"][1],
                label=SYSTEM_STYLE["baseline"][0], xerr=err("baseline"),
                error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "dimgrey"})
    ax.axvline(0, ls="--", lw=1, color="grey", label="random (0)")
    ax.axvline(1, ls="--", lw=1, color="black", label="teacher (1)")
    ax.set_yticks(y, d["task"])
    # below-random tasks happen (an untrained ELM); keep the random line off the axis spine either way
    lowest = pd.concat([d["elm_normalised"], d["baseline_normalised"]]).min()
    ax.set_xlim(left=min(-0.1, lowest - 0.05) if pd.notna(lowest) else -0.1)
    # Intervals of 6 movies can span several units: show them to 3 at most, so the bars stay readable.
    ends = pd.concat([d.get(f"{s}_normalised{x}", pd.Series(dtype=float)) for s in ("elm", "baseline")
                      for x in ("", "_low", "_high")])
    if ends.notna().any():
        ax.set_xlim(max(-1.5, min(ax.get_xlim()[0], ends.min() - 0.05)), min(3.0, max(1.1, ends.max() + 0.05)))
    ax.set_xlabel("normalised SC  (0 = a random movie's text, 1 = the teacher's text)")
    ax.set_title(f"SC per task, held-out movies (up to {int(d['n'].max())} per task; bars: 95% intervals)")
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


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


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
            line = ax.plot(s["alpha"], s["value"], "o-", color=color, label=label)[0]
            if "low" in s and s["low"].notna().any():
                ax.fill_between(s["alpha"], s["low"], s["high"], color=line.get_color(), alpha=0.15, lw=0)
        _references(ax, d["random"].iloc[0], d["truth"].iloc[0])
        m = METRIC_LABEL.get(metric, metric)
        pairs = int(d["n_pairs"].max())
        ax.set_title(f"{KIND_LABEL.get(kind, kind)}: {m} (mean over {pairs} pair{'s' if pairs != 1 else ''}; "
                     "band: 95% interval)", fontsize=10)
        ax.set_xlabel("interpolation weight a  (0 = A, 1 = B)")
        ax.set_ylabel(m)
        ax.grid(alpha=0.3)
    fig.suptitle("Interpolation: w = (1 - a) w_A + a w_B")
    _save(fig, list(axes[0]), path)
    return True


def _yerr(d: pd.DataFrame, prefix: str, column: str | None = None):
    """Error bars from the ``<prefix>_low`` / ``<prefix>_high`` columns (95% intervals over entities), if any."""
    lo, hi = f"{prefix}_low", f"{prefix}_high"
    if lo not in d or not d[lo].notna().any():
        return None
    v = d[column or prefix]
    return [(v - d[lo]).clip(lower=0).fillna(0), (d[hi] - v).clip(lower=0).fillna(0)]


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
            ax.errorbar(s["alpha"], s["value"], yerr=_yerr(s, "value"), fmt="o-", color=f"C{i}", capsize=2,
                        label=METRIC_LABEL.get(metric, metric))
            _references(ax, s["random"].iloc[0], s["truth"].iloc[0])
        ax.set_xlabel("step a along the CAV")
        ax.set_ylabel(" / ".join(METRIC_LABEL.get(m, m) for m in metrics))
        ax.grid(alpha=0.3)
        twin = ax.twinx()
        score = d.groupby("alpha", as_index=False).first()  # every metric row of a step has the same texts
        twin.errorbar(score["alpha"], score["attribute_score"], yerr=_yerr(score, "score", "attribute_score"),
                      fmt="s:", color="C3", capsize=2, label="attribute score")
        twin.set_ylabel("attribute score in the text", color="C3")
        twin.set_ylim(0, 1)
        twins.append(twin)
        ax.set_title(f"{attribute} ({space})")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle("Concept activation vectors: w + a * CAV (bars: 95% intervals over the moved entities)")
    _save(fig, list(axes.flat) + twins, path)
    return True
