"""95% bootstrap intervals of the report's numbers: the per-task normalised SC (resampling each task's
movies), every headline row (headline_intervals) and the interpolation curves (curve_intervals). With a
handful of movies per task a single number reads far more precise than it is."""

from __future__ import annotations

import numpy as np
import pandas as pd

from elm.evaluate.controls import by_entity
from elm.metrics.bootstrap import interval, mean_interval
from elm.metrics.semantic_consistency import normalised

COLUMNS = ["split", "task", "elm_normalised_low", "elm_normalised_high", "baseline_normalised_low",
           "baseline_normalised_high", "elm_minus_baseline", "elm_minus_baseline_low", "elm_minus_baseline_high"]


def per_task_intervals(gens: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per split and movie task: the interval of each system's normalised SC, references resampled with it
    (random: the teacher's text against a shuffled movie; truth: the teacher's text), and the ELM's SC minus
    the baseline's on the movies both answered, with its interval."""
    g = gens[(gens["experiment"] == "generalisation") & (gens["entity_kind"] == "movie")]
    rows = []
    for (split, task), d in g.groupby(["split", "task"], sort=False):
        key = ["entity_id", "partner_id"]
        truth = d[d["system"] == "truth"].drop_duplicates(key).set_index(key)
        row = {"split": split, "task": task}
        for system in ("elm", "baseline"):
            s = d[d["system"] == system].drop_duplicates(key).set_index(key)
            both = s.index.intersection(truth.index)
            sc, t_sc, t_rand = (s.loc[both, "sc"].to_numpy(float), truth.loc[both, "sc"].to_numpy(float),
                                truth.loc[both, "sc_random"].to_numpy(float))
            ok = np.isfinite(sc) & np.isfinite(t_sc) & np.isfinite(t_rand)
            sc, t_sc, t_rand = sc[ok], t_sc[ok], t_rand[ok]
            lo, hi = interval(lambda i: normalised(sc[i].mean(), t_rand[i].mean(), t_sc[i].mean()), len(sc),
                              seed=seed) if len(sc) else (np.nan, np.nan)
            row[f"{system}_normalised_low"], row[f"{system}_normalised_high"] = lo, hi
        # the two systems on the movies both answered: per task, which movies were drawn moves each system's
        # normalised score more than the systems differ, so the comparison is paired
        e, b = (d[d["system"] == s].drop_duplicates(key).set_index(key)["sc"] for s in ("elm", "baseline"))
        diff = (e - b.reindex(e.index)).dropna().to_numpy(float)
        row["elm_minus_baseline"], row["elm_minus_baseline_low"], row["elm_minus_baseline_high"] = (
            mean_interval(diff, seed=seed) if len(diff) else (np.nan,) * 3)
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


# -----------------------------------------------------------------------------
# the headline table's intervals

INTERVAL_COLUMNS = ["value_low", "value_high", "normalised_low", "normalised_high"]


def _paired(system: pd.DataFrame, truth: pd.DataFrame, metric: str, random_col: str, seed: int) -> list[float]:
    """[value_low, value_high, normalised_low, normalised_high] of a system's mean ``metric``, resampling
    entities; the references (truth: the teacher's text, random: its ``random_col``) are resampled with them."""
    ids, s, n = by_entity(system, metric)
    t_ids, t, tn = by_entity(truth, metric)
    r_ids, r, rn = by_entity(truth, random_col)
    if len(ids) < 2:
        return [np.nan] * 4
    value = interval(lambda i: s[i].sum() / n[i].sum(), len(ids), seed=seed)
    common = np.intersect1d(np.intersect1d(ids, t_ids), r_ids)
    a, b, c = (np.searchsorted(x, common) for x in (ids, t_ids, r_ids))

    def norm(i):
        return normalised(s[a][i].sum() / n[a][i].sum(), r[c][i].sum() / rn[c][i].sum(), t[b][i].sum() / tn[b][i].sum())
    return [*value, *interval(norm, len(common), seed=seed)]


def headline_intervals(headline: pd.DataFrame, gens: pd.DataFrame, cav: pd.DataFrame | None = None,
                       seed: int = 0) -> pd.DataFrame:
    """The headline table with 95% bootstrap intervals of ``value`` and ``normalised``: over movies for SC
    (references resampled with them), users for BC, pairs for interpolation, moved entities for CAV."""
    out = headline.copy()
    for col in INTERVAL_COLUMNS:
        out[col] = np.nan
    gen = gens[gens["experiment"] == "generalisation"]
    for k, row in out.iterrows():
        found = None
        if row["section"] == "generalisation":
            split = "heldout" if "held-out" in row["name"] else "train"
            d = gen[(gen["split"] == split) & (gen["entity_kind"] == "movie")]
            found = _paired(d[d["system"] == row["system"]], d[d["system"] == "truth"], "sc", "sc_random", seed)
        elif row["section"] == "user profiles":
            task = row["name"].rsplit(", ", 1)[-1]
            d = gen[(gen["split"] == "heldout") & (gen["task"] == task) & (gen["entity_kind"] == "user")]
            found = _paired(d[d["system"] == row["system"]], d[d["system"] == "truth"], "bc", "bc_random", seed)
        elif row["section"] == "interpolation":
            alpha = float(row["name"].rsplit("= ", 1)[-1])
            d = gens[(gens["experiment"] == "interpolation") & (gens["entity_kind"] == "movie")
                     & (gens["system"] == row["system"]) & np.isclose(gens["alpha"].astype(float), alpha, atol=0.005)]
            lo, hi = mix_interval(d, "sc", alpha, seed)
            gap = row["truth"] - row["random"]
            found = [lo, hi, *((np.array([lo, hi]) - row["random"]) / gap if abs(gap) >= 0.005 else [np.nan] * 2)]
        elif row["section"] == "cav" and row["system"] == "elm" and cav is not None and "score_low" in cav:
            attribute, rest = row["name"].split(" (", 1)
            space = rest.split(")", 1)[0]
            alpha = float(row["name"].rsplit("= ", 1)[-1])
            hit = cav[(cav["attribute"] == attribute) & (cav["space"] == space) & np.isclose(cav["alpha"], alpha)]
            if len(hit):
                found = [hit["score_low"].iloc[0], hit["score_high"].iloc[0], np.nan, np.nan]
        if found is not None:
            out.loc[k, INTERVAL_COLUMNS] = found
    return out


def mix_interval(d: pd.DataFrame, metric: str, alpha: float, seed: int) -> tuple[float, float]:
    """95% interval of the mean over the distinct mixed vectors at one weight: at a = 0 every pair that shares
    its first movie is one vector and one text (pairs are drawn around an anchor), and resampling copies of
    one text would draw a zero-width interval. With fewer than two distinct vectors there is none (NaN)."""
    key = "entity_id" if alpha == 0 else "partner_id" if alpha == 1 else ["entity_id", "partner_id"]
    x = d.groupby(key, dropna=False)[metric].mean()
    return mean_interval(x, seed=seed)[1:] if x.notna().sum() >= 2 else (np.nan, np.nan)


def curve_intervals(gens: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Interpolation curves: 95% interval of the mean over pairs at each a, per kind, system and metric."""
    g = gens[gens["experiment"] == "interpolation"]
    rows = []
    for (kind, system, alpha), d in g.groupby(["entity_kind", "system", "alpha"], sort=False):
        metric = "sc" if d["sc"].notna().any() else "bc"
        lo, hi = mix_interval(d, metric, float(alpha), seed)
        rows.append(dict(entity_kind=kind, metric=metric, system=system, alpha=float(alpha), low=lo, high=hi))
    return pd.DataFrame(rows, columns=["entity_kind", "metric", "system", "alpha", "low", "high"])
