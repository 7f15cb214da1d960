"""Bootstrap confidence intervals over entities: how much a number would move with other movies or users.

Every headline figure is a statistic of per-entity values (a mean, a difference of means, a ratio of
differences). Resampling the entities with replacement and recomputing the statistic gives its spread;
the 2.5th and 97.5th percentiles of the resampled statistics are the 95% interval (percentile method).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

N_BOOT = 1000
LEVEL = 0.95


def interval(stat: Callable[[np.ndarray], float], n: int, *, n_boot: int = N_BOOT, level: float = LEVEL,
             seed: int = 0) -> tuple[float, float]:
    """(low, high) of ``stat(rows)`` over ``n_boot`` resamples of ``n`` rows; NaN with fewer than 2 rows.
    ``stat`` takes an index array into the rows (with repeats) and returns a number (NaN samples are dropped)."""
    if n < 2:
        return np.nan, np.nan
    rng = np.random.default_rng(seed)
    samples = np.array([stat(rng.integers(0, n, n)) for _ in range(n_boot)], dtype=float)
    samples = samples[np.isfinite(samples)]
    if len(samples) < n_boot // 2:  # the statistic is undefined on most resamples: no honest interval
        return np.nan, np.nan
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)


def mean_interval(values, **kw) -> tuple[float, float, float]:
    """(mean, low, high) of the values' mean, NaN values dropped first."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return np.nan, np.nan, np.nan
    return (float(x.mean()), *interval(lambda i: x[i].mean(), len(x), **kw))
