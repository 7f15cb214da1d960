"""95% bootstrap intervals of the per-task normalised SC, resampling the held-out (or training) movies of
each task: with a handful of movies per task a single number reads far more precise than it is."""

from __future__ import annotations

import numpy as np
import pandas as pd

from elm.metrics.bootstrap import interval
from elm.metrics.semantic_consistency import normalised

COLUMNS = ["split", "task", "elm_normalised_low", "elm_normalised_high", "baseline_normalised_low",
           "baseline_normalised_high"]


def per_task_intervals(gens: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per split and movie task: the interval of each system's normalised SC, references resampled with it
    (random: the teacher's text against a shuffled movie; truth: the teacher's text)."""
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
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)
