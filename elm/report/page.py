"""The report page as Markdown: headline and per-task tables, figures, example generations, number formatting."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from elm.artifacts import Artifact
from elm.report.files import CAV_PNG, HISTORY_PNG, INTERPOLATION_PNG, PER_TASK_PNG

EXAMPLE_CHARS = 360
"""Example texts are clipped to about this many characters: enough to judge content, short enough for a table."""
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


def with_interval(value: Any, low: Any, high: Any) -> str:
    """ "0.412 [0.350, 0.470]", or the value alone where there is no interval."""
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return _num(value)
    return f"{_num(value)} [{_num(low)}, {_num(high)}]"


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
    controls: pd.DataFrame | None = None
    """controls.parquet of the evaluation (None for one made before it existed)."""
    history: pd.DataFrame | None = None
    """Every evaluation in the store up to this one (elm.report.history)."""


CONTROLS_INTRO = (
    "First the question every other number depends on: does the text depend on the vector it was given? "
    "Each system's held-out texts are scored against their own movie's vector and against a shuffled movie's; "
    "*specificity* is the difference (0 for a text that ignores its input). Every text is cleaned the same "
    "way before scoring: sentences naming the movie are removed. Facts are read back from the summaries "
    "(the decade and the genres they state) and compared with the movie's, and with a shuffled movie's. "
    "Brackets: 95% bootstrap intervals over movies. The SC measures are repeated under a second encoder "
    "(another model than the one that made the vectors), and a conclusion that holds under one of them only "
    "is flagged.")


def _controls_md(ctrl: pd.DataFrame) -> str:
    from elm.evaluate.controls import controls_table, verdict

    header, rows = controls_table(ctrl)
    sentences = "\n".join(f"- {md_text(s)}" for s in verdict(ctrl))
    return sentences + "\n\n" + md_table(header, [[md_text(c) for c in r] for r in rows], "l" + "r" * (len(header) - 1))


def _headline_md(h: pd.DataFrame) -> str:
    if h.empty:
        return "No headline figures: the evaluate artifact has no scores."
    rows = [[md_text(r.section), md_text(r.name), md_text(r.system), str(r.n),
             with_interval(r.value, getattr(r, "value_low", None), getattr(r, "value_high", None)), _num(r.random),
             _num(r.truth),
             with_interval(r.normalised, getattr(r, "normalised_low", None), getattr(r, "normalised_high", None))]
            for r in h.itertuples()]
    return md_table(["section", "measure", "system", "n", "value [95%]", "random", "truth", "normalised [95%]"],
                    rows, "lllrrrrr")


def _per_task_md(per_task: pd.DataFrame) -> str:
    held = per_task[per_task["split"] == "heldout"]
    train = per_task[per_task["split"] == "train"][["task", "elm_normalised"]].rename(
        columns={"elm_normalised": "elm_normalised_train"})
    d = held.merge(train, on="task", how="outer").sort_values("task")
    if d.empty:
        return "No movie SC scores in this evaluate artifact."
    def ci(r, system: str) -> str:
        value, lo, hi = (getattr(r, f"{system}_normalised{x}", None) for x in ("", "_low", "_high"))
        if lo is None or pd.isna(lo):
            return _num(value)
        return f"{_num(value)} [{_num(lo)}, {_num(hi)}]"

    def paired(r) -> str:
        value, lo, hi = (getattr(r, f"elm_minus_baseline{x}", math.nan) for x in ("", "_low", "_high"))
        return _num(value) if pd.isna(lo) else f"{_num(value)} [{_num(lo)}, {_num(hi)}]"

    rows = [[f"`{r.task}`", _num(r.n, 0), _num(r.elm), _num(r.baseline), _num(r.random), _num(r.truth),
             md_text(ci(r, "elm")), md_text(ci(r, "baseline")), md_text(paired(r)), _num(r.elm_normalised_train)]
            for r in d.itertuples()]
    return md_table(["task", "n", "ELM SC", "baseline SC", "random", "truth", "ELM norm.", "baseline norm.",
                     "ELM - baseline SC, same movies", "ELM norm. (train)"], rows, "lrrrrrrrrr")


def _history_md(h: pd.DataFrame, current: str) -> str:
    rows = [[str(i), f"{t:%Y-%m-%d %H:%M}", f"`{v[:12]}`" + (" (this)" if v == current else ""),
             f"`{str(tr)[:12]}`", _num(a), _num(b), _num(c), _num(d), str(n)]
            for i, (t, v, tr, a, b, c, d, n) in enumerate(h[["created_at", "evaluate", "train", "sc_normalised_elm",
                                                           "sc_normalised_baseline", "bc_normalised_elm", "sc_elm",
                                                           "tasks"]].itertuples(index=False), 1)]
    return md_table(["#", "made (UTC)", "evaluate", "train", "ELM SC norm.", "baseline SC norm.", "ELM BC norm.",
                     "ELM SC", "tasks"], rows, "rlllrrrrr")


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
    ]
    if p.controls is not None and not p.controls.empty:
        parts += ["## Does the text follow the vector?", _controls_md(p.controls), CONTROLS_INTRO]
    parts += [
        "## Headline",
        _headline_md(p.headline),
    ]
    if p.history is not None and not p.history.empty:
        parts += ["## History: every evaluation in the store",
                  "The headline numbers of each evaluate version made up to this one, oldest first (held-out "
                  "movies pooled over tasks; users: mean over user tasks). A scheduled re-evaluation that lands a "
                  "new model adds a row.",
                  _figure(HISTORY_PNG, "Normalised SC and BC of every evaluation over time",
                          p.plots.get(HISTORY_PNG, False), "no evaluation has scores"),
                  _history_md(p.history, ev.version)]
    parts += [
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
