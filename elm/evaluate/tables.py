"""Aggregation: the tables the report reads, from generations.parquet (scores, interpolation, cav), and the
headline numbers of the manifest summary."""

from __future__ import annotations

import numpy as np
import pandas as pd

from elm.embed.splits import HELDOUT, TRAIN
from elm.evaluate.config import PROFILE_TASK, SUMMARY_TASK
from elm.metrics.bootstrap import mean_interval
from elm.metrics.semantic_consistency import normalised

METRICS = {"sc": ("sc_random", "sc_random"), "bc": ("bc_random", "bc_other")}
"""metric -> (its random reference column, its random-other-entity column) in generations.parquet."""


def aggregate_scores(gens: pd.DataFrame) -> pd.DataFrame:
    """scores.parquet: per split x task x metric, the mean of each system and the references (truth: the
    teacher's text; random: see METRICS; other_entity: the teacher's text scored against another entity)."""
    g = gens[gens["experiment"] == "generalisation"]
    rows = []
    for (split, task, kind), d in g.groupby(["split", "task", "entity_kind"], sort=False):
        for metric, (rand_col, other_col) in METRICS.items():
            by = {s: d.loc[d["system"] == s] for s in ("elm", "baseline", "truth")}
            elm = by["elm"][metric].dropna()
            if elm.empty:
                continue
            truth = by["truth"][metric].mean()
            random = by["truth"][rand_col].mean()
            base = by["baseline"][metric].dropna()
            # the baseline answers only some of the movies: its references are the teacher's on those movies,
            # so its normalised score is paired, as the controls' is, not set against the other movies' levels
            paired = by["truth"][by["truth"]["entity_id"].isin(by["baseline"].loc[base.index, "entity_id"])]
            b_truth, b_random = (paired[metric].mean(), paired[rand_col].mean()) if len(base) else (np.nan, np.nan)
            rows.append(dict(split=split, task=task, entity_kind=kind, metric=metric, n=len(elm), elm=elm.mean(),
                             baseline=base.mean() if len(base) else np.nan, truth=truth, random=random,
                             other_entity=by["truth"][other_col].mean(),
                             elm_normalised=normalised(elm.mean(), random, truth),
                             baseline_n=len(base), baseline_truth=b_truth, baseline_random=b_random,
                             baseline_normalised=normalised(base.mean(), b_random, b_truth) if len(base) else np.nan))
    cols = ["split", "task", "entity_kind", "metric", "n", "elm", "baseline", "truth", "random", "other_entity",
            "elm_normalised", "baseline_n", "baseline_truth", "baseline_random", "baseline_normalised"]
    out = pd.DataFrame(rows, columns=cols)
    out["n"] = out["n"].astype("int64")
    out["baseline_n"] = out["baseline_n"].astype("int64")
    return out


def reference_levels(scores: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """entity kind -> (random, truth) of the metric its curves use: SC of held-out summaries for movies,
    BC of held-out profiles for users (the dashed lines of the interpolation and CAV plots)."""
    out = {}
    for kind, task, metric in (("movie", SUMMARY_TASK, "sc"), ("user", PROFILE_TASK, "bc")):
        r = scores[(scores["split"] == HELDOUT) & (scores["task"] == task) & (scores["metric"] == metric)]
        out[kind] = (float(r["random"].iloc[0]), float(r["truth"].iloc[0])) if len(r) else (np.nan, np.nan)
    return out


def _curve_metric(row: pd.Series) -> str:
    return "sc" if np.isfinite(row["sc"]) else "bc"


def aggregate_interpolation(gens: pd.DataFrame, refs: dict[str, tuple[float, float]]) -> pd.DataFrame:
    g = gens[gens["experiment"] == "interpolation"]
    cols = ["entity_kind", "pair", "a_id", "b_id", "alpha", "system", "metric", "value", "random", "truth"]
    if g.empty:
        return pd.DataFrame(columns=cols)
    metric = g.apply(_curve_metric, axis=1)
    out = pd.DataFrame({"entity_kind": g["entity_kind"], "pair": g["title"], "a_id": g["entity_id"].astype("int64"),
                        "b_id": g["partner_id"].astype("int64"), "alpha": g["alpha"], "system": g["system"],
                        "metric": metric, "value": np.where(metric == "sc", g["sc"], g["bc"])})
    out["random"] = out["entity_kind"].map(lambda k: refs[k][0])
    out["truth"] = out["entity_kind"].map(lambda k: refs[k][1])
    return out[cols].reset_index(drop=True)


def aggregate_cav(gens: pd.DataFrame, refs: dict[str, tuple[float, float]]) -> pd.DataFrame:
    g = gens[gens["experiment"] == "cav"]
    cols = ["space", "entity_kind", "attribute", "alpha", "metric", "n", "value", "value_low", "value_high",
            "attribute_score", "score_low", "score_high", "random", "truth"]
    if g.empty:
        return pd.DataFrame(columns=cols)
    g = g.assign(metric=g.apply(_curve_metric, axis=1))
    g = g.assign(value=np.where(g["metric"] == "sc", g["sc"], g["bc"]))
    keys = ["space", "entity_kind", "attribute", "alpha", "metric"]
    out = (g.groupby(keys, sort=False)
           .agg(n=("value", "size"), value=("value", "mean"), attribute_score=("attribute_score", "mean"))
           .reset_index())
    # 95% intervals over the moved entities (one row each per step)
    ci = {k: (*mean_interval(d["value"])[1:], *mean_interval(d["attribute_score"])[1:])
          for k, d in g.groupby(keys, sort=False)}
    bounds = np.array([ci[tuple(r)] for r in out[keys].itertuples(index=False)], dtype=float).reshape(-1, 4)
    out["value_low"], out["value_high"], out["score_low"], out["score_high"] = bounds.T
    out["n"] = out["n"].astype("int64")
    out["random"] = out["entity_kind"].map(lambda k: refs[k][0])
    out["truth"] = out["entity_kind"].map(lambda k: refs[k][1])
    return out[cols]


def headline(scores: pd.DataFrame, cav: pd.DataFrame, classifiers: pd.DataFrame) -> dict:
    """The few numbers that go in the manifest summary (and the top of the report)."""
    movie = scores[(scores["entity_kind"] == "movie") & (scores["metric"] == "sc")]
    held, train = movie[movie["split"] == HELDOUT], movie[movie["split"] == TRAIN]
    prof = scores[(scores["task"] == PROFILE_TASK) & (scores["metric"] == "bc") & (scores["split"] == HELDOUT)]

    def r(x) -> float | None:
        return None if x is None or not np.isfinite(x) else round(float(x), 4)

    based = held[held["baseline"].notna()]
    # pooled (normalise the means): a task whose references nearly coincide would blow up a mean of ratios
    out = {"heldout_sc_normalised": {
               "elm": r(normalised(held["elm"].mean(), held["random"].mean(), held["truth"].mean())),
               "baseline": r(normalised(based["baseline"].mean(), based["baseline_random"].mean(),
                                        based["baseline_truth"].mean()))
               if len(based) else None},
           "sc": {"elm_heldout": r(held["elm"].mean()), "elm_train": r(train["elm"].mean()) if len(train) else None,
                  "truth_heldout": r(held["truth"].mean()), "random_heldout": r(held["random"].mean())},
           "tasks": int(held["task"].nunique())}
    if len(prof):
        p = prof.iloc[0]
        out["profile_bc"] = {"elm": r(p["elm"]), "truth": r(p["truth"]), "random": r(p["random"]),
                             "other_user_text": r(p["other_entity"]), "normalised": r(p["elm_normalised"])}
    if len(cav):
        lo, hi = cav["alpha"].min(), cav["alpha"].max()
        a = cav.groupby(["space", "attribute"])
        out["cav_attribute_score"] = {
            f"{s}/{attr}": [r(d.loc[d["alpha"] == lo, "attribute_score"].mean()),
                            r(d.loc[d["alpha"] == hi, "attribute_score"].mean())] for (s, attr), d in a}
    if len(classifiers):
        out["cav_heldout_accuracy"] = {f"{row.space}/{row.attribute}": r(row.heldout_accuracy)
                                       for row in classifiers.itertuples()}
    return out
