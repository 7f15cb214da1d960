"""Does the text follow the vector? The controls of an evaluation, each with its bootstrap interval.

A score without its control is not a result: a model that writes one text per task scores above the
``random`` reference (measured on the teacher's texts) without reading anything. So, on the held-out movie
rows of the generalisation experiment, for every system (elm, baseline, truth = the teacher, and facts = the
template teacher writing from the decade and genres alone, experiments.py: facts_control, the most an ELM
that reads only those facts can reach):

    sc                   mean SC of the cleaned text against its own movie's vector
    sc_shuffled          the same texts against the other held-out movies' vectors (same task; the mean over
                         them, metrics/semantic_consistency.py: others_mean). For the ELM this is also the
                         shuffled-input control: decoding is greedy, so the ELM given movie j's vector writes
                         exactly its text for j, and scoring that against movie i is this pairing
    specificity          sc - sc_shuffled: 0 for a text that ignores its input
    specificity_ratio    a system's specificity over the teacher's, on the same rows (1: reads as well)
    normalised           (sc - teacher's sc_shuffled) / (teacher's sc - teacher's sc_shuffled)
    named                share of raw texts that named their movie, whole or by title words (removed before
                         scoring, elm/evaluate/scoring.py)
    sc_raw               mean SC before that cleaning
    distinct             share of distinct texts among the answers to one task, averaged over tasks
    decade, genre_f1, genre_precision, genre_recall
                         facts read back from summaries (elm/metrics/facts.py); ``control`` holds the same
                         measure against every other summarised movie's facts (the mean over shufflings)
    sc_minus_baseline    (system elm) ELM SC minus the baseline's on the rows both answered
    tasks_above_baseline (system elm) share of tasks where that paired difference is above 0; n: tasks; the
                         interval resamples movies within each task
    summary_normalised   (system elm) normalised SC of held-out summaries alone
    endpoint_normalised  (system elm) the same for interpolation's ends (a = 0, 1: real movies' own vectors),
                         pooled over distinct movies, with the held-out summaries' references (endpoint_controls)

On the held-out users' profiles, the same questions for BC (systems elm, truth and popular, a text naming
the films most users like, experiments.py: popular_control):

    bc, bc_shuffled      mean BC against the user's own CF ranking, and against another user's
    bc_specificity       bc - bc_shuffled: 0 for a profile that ignores its user (the popular text's is ~0)
    bc_normalised        (bc - random ranking) / (teacher's bc - random ranking), paired on users

Intervals resample movies (users for the profile rows; bootstrap over entities, elm/metrics/bootstrap.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from elm.embed.splits import HELDOUT
from elm.evaluate.config import PROFILE_TASK, SUMMARY_TASK
from elm.metrics.bootstrap import LEVEL, N_BOOT, interval
from elm.metrics.facts import fact_scores

COLUMNS = ["measure", "system", "n", "value", "low", "high", "control"]
"""controls.parquet: n counts what the value averages over (movies, tasks); control: the measure's own
shuffled control where it has one (for facts: the text against another movie's facts)."""

SYSTEMS = ("elm", "baseline", "truth", "facts", "popular")
SECOND = {m: f"{m}2" for m in ("sc", "sc_shuffled", "specificity", "specificity_ratio", "normalised")}
"""The SC measures again under the second encoder (second_encoder.py), as <measure>2."""


def heldout_movie_rows(gens: pd.DataFrame) -> pd.Series:
    """The rows every control is measured on: held-out movie rows of the generalisation experiment (and of
    the facts control on the same rows)."""
    return (gens["experiment"].isin(["generalisation", "control"]) & (gens["split"] == HELDOUT)
            & (gens["entity_kind"] == "movie"))


def by_entity(d: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(entity ids, per-entity sums, per-entity counts) of a column's finite values."""
    d = d[np.isfinite(d[column])]
    g = d.groupby("entity_id")[column].agg(["sum", "count"])
    return g.index.to_numpy(), g["sum"].to_numpy(float), g["count"].to_numpy(float)


def _pooled(sums: np.ndarray, counts: np.ndarray, seed: int) -> tuple[float, float, float]:
    if counts.sum() == 0:
        return np.nan, np.nan, np.nan
    value = sums.sum() / counts.sum()
    return (float(value), *interval(lambda i: sums[i].sum() / counts[i].sum(), len(sums), seed=seed))


def _row(measure: str, system: str, n: int, est: tuple[float, float, float], control: float = np.nan) -> dict:
    return dict(measure=measure, system=system, n=int(n), value=est[0], low=est[1], high=est[2], control=control)


def sc_controls(held: pd.DataFrame, seed: int) -> list[dict]:
    rows = []
    truth = held[held["system"] == "truth"].assign(spec=lambda d: d["sc"] - d["sc_random"])
    t_ids, t_spec, t_n = by_entity(truth, "spec")
    _, t_sc, t_scn = by_entity(truth, "sc")
    _, t_rand, t_rn = by_entity(truth, "sc_random")
    for system in SYSTEMS:
        d = held[held["system"] == system].assign(spec=lambda d: d["sc"] - d["sc_random"])
        if d.empty:
            continue
        for measure, column in (("sc", "sc"), ("sc_shuffled", "sc_random"), ("specificity", "spec"),
                                ("sc_raw", "sc_raw")):
            _, sums, counts = by_entity(d, column)
            rows.append(_row(measure, system, len(sums), _pooled(sums, counts, seed)))
        named = d["named"].astype(float).to_numpy()
        rows.append(_row("named", system, len(d), (named.mean(), *interval(lambda i: named[i].mean(), len(named),
                                                                            seed=seed))))
        # Ratios on the movies both have, resampled together (paired): the teacher's spread is part of it.
        ids, spec, n = by_entity(d, "spec")
        _, sc, scn = by_entity(d, "sc")
        common, a, b = np.intersect1d(ids, t_ids, return_indices=True)
        if len(common) and system != "truth":
            def ratio(i, a=a, b=b, spec=spec, n=n):
                den = t_spec[b][i].sum() / t_n[b][i].sum()
                return (spec[a][i].sum() / n[a][i].sum()) / den if den > 0 else np.nan
            value = ratio(np.arange(len(common)))
            rows.append(_row("specificity_ratio", system, len(common),
                             (value, *interval(ratio, len(common), seed=seed))))

            def norm(i, a=a, b=b, sc=sc, scn=scn):
                rand = t_rand[b][i].sum() / t_rn[b][i].sum()
                top = t_sc[b][i].sum() / t_scn[b][i].sum()
                return (sc[a][i].sum() / scn[a][i].sum() - rand) / (top - rand) if top - rand > 0.005 else np.nan
            rows.append(_row("normalised", system, len(common),
                             (norm(np.arange(len(common))), *interval(norm, len(common), seed=seed))))
    return rows


def distinct_controls(held: pd.DataFrame) -> list[dict]:
    rows = []
    for system in SYSTEMS:
        d = held[held["system"] == system]
        if d.empty:
            continue
        per_task = d.groupby("task")["output"].agg(lambda s: s.str.strip().str.lower().nunique() / len(s))
        rows.append(_row("distinct", system, len(per_task), (float(per_task.mean()), np.nan, np.nan)))
        if SUMMARY_TASK in per_task:
            n = int((d["task"] == SUMMARY_TASK).sum())
            rows.append(_row("distinct_summary", system, n, (float(per_task[SUMMARY_TASK]), np.nan, np.nan)))
    return rows


def fact_controls(held: pd.DataFrame, movies: pd.DataFrame, seed: int) -> list[dict]:
    """Facts read back from held-out summaries, against the movie's facts and a shuffled movie's."""
    facts = movies.set_index("movieId")[["year", "genres"]]
    rows = []
    for system in SYSTEMS:
        d = held[(held["system"] == system) & (held["task"] == SUMMARY_TASK)].reset_index(drop=True)
        d = d[d["entity_id"].isin(facts.index)].reset_index(drop=True)
        if len(d) < 2:
            continue
        own = pd.DataFrame([fact_scores(t, *facts.loc[int(e)]) for t, e in zip(d["output"], d["entity_id"])])
        # the control: each text against every other summarised movie's facts (all shufflings at once)
        shuf = pd.DataFrame([fact_scores(t, *facts.loc[int(e)]) for i, t in enumerate(d["output"])
                             for j, e in enumerate(d["entity_id"]) if j != i])
        for measure in ("decade", "genre_f1", "genre_precision", "genre_recall"):
            x = own[measure].to_numpy(float)
            ok = np.isfinite(x)
            if not ok.any():
                continue
            x = x[ok]
            est = (float(x.mean()), *interval(lambda i, x=x: x[i].mean(), len(x), seed=seed))
            rows.append(_row(measure, system, len(x), est, float(np.nanmean(shuf[measure].to_numpy(float)))))
    return rows


def baseline_controls(held: pd.DataFrame, seed: int, n_boot: int = N_BOOT) -> list[dict]:
    """The ELM against the text-only baseline on the rows both answered (the baseline answers a few movies of
    each task): SC difference pooled, and the share of tasks where the ELM's mean is higher. Paired, because
    per task a handful of movies moves either system's mean more than the systems differ."""
    key = ["task", "entity_id", "partner_id"]
    e, b = (held[held["system"] == s][[*key, "sc"]].drop_duplicates(key) for s in ("elm", "baseline"))
    m = e.merge(b, on=key, suffixes=("", "_baseline")).assign(diff=lambda d: d["sc"] - d["sc_baseline"])
    m = m[np.isfinite(m["diff"])]
    if m.empty:
        return []
    _, sums, counts = by_entity(m, "diff")
    per_task = [d.to_numpy(float) for _, d in m.groupby("task")["diff"]]
    rng = np.random.default_rng(seed)
    # movies resampled within each task (a task keeps its size), the share recounted
    boot = [np.mean([x[rng.integers(0, len(x), len(x))].mean() > 0 for x in per_task]) for _ in range(n_boot)]
    lo, hi = np.percentile(boot, [(1 - LEVEL) / 2 * 100, (1 + LEVEL) / 2 * 100])
    return [_row("sc_minus_baseline", "elm", len(sums), _pooled(sums, counts, seed)),
            _row("tasks_above_baseline", "elm", len(per_task),
                 (float(np.mean([x.mean() > 0 for x in per_task])), float(lo), float(hi)))]


def endpoint_controls(gens: pd.DataFrame, seed: int) -> list[dict]:
    """Interpolation's ends (a = 0 and 1) are real movies' own vectors, described with the summary task: they
    should read as well as held-out summaries do. Both are normalised with the held-out summaries' references
    (the teacher's texts), the ends pooled over distinct movies: every pair around the anchor shares its a = 0
    end, which is one text, so alone it is one movie and has no interval."""
    summ = gens[heldout_movie_rows(gens) & (gens["task"] == SUMMARY_TASK)]
    truth, elm = summ[summ["system"] == "truth"], summ[summ["system"] == "elm"]
    ends = gens[(gens["experiment"] == "interpolation") & (gens["entity_kind"] == "movie")
                & (gens["system"] == "elm") & gens["alpha"].isin([0.0, 1.0])]
    if truth.empty or elm.empty or ends.empty:
        return []
    rand, top = truth["sc_random"].mean(), truth["sc"].mean()
    if not top - rand > 0.005:
        return []
    movie = np.where(ends["alpha"] == 0.0, ends["entity_id"], ends["partner_id"])
    per_movie = ends.assign(movie=movie).groupby("movie")["sc"].mean().dropna().to_numpy(float)
    held = elm["sc"].dropna().to_numpy(float)

    def norm(x):
        return (x - rand) / (top - rand)
    return [_row("endpoint_normalised", "elm", len(per_movie),
                 (norm(per_movie.mean()), *(norm(np.array(interval(lambda i: per_movie[i].mean(), len(per_movie),
                                                                   seed=seed)))))),
            _row("summary_normalised", "elm", len(held),
                 (norm(held.mean()), *norm(np.array(interval(lambda i: held[i].mean(), len(held), seed=seed)))))]


def profile_controls(gens: pd.DataFrame, seed: int) -> list[dict]:
    """BC of held-out users' profiles against their own CF ranking and another user's, per system."""
    held = gens[gens["experiment"].isin(["generalisation", "control"]) & (gens["split"] == HELDOUT)
                & (gens["task"] == PROFILE_TASK)]
    if held.empty or "bc_other" not in held:
        return []
    held = held.assign(spec=held["bc"] - held["bc_other"])
    truth = held[held["system"] == "truth"]
    t_ids, t_bc, t_n = by_entity(truth, "bc")
    _, t_rand, _ = by_entity(truth, "bc_random")
    rows = []
    for system in SYSTEMS:
        d = held[held["system"] == system]
        if d.empty:
            continue
        for measure, column in (("bc", "bc"), ("bc_shuffled", "bc_other"), ("bc_specificity", "spec")):
            _, sums, counts = by_entity(d, column)
            rows.append(_row(measure, system, len(sums), _pooled(sums, counts, seed)))
        ids, bc, n = by_entity(d, "bc")
        common, a, b = np.intersect1d(ids, t_ids, return_indices=True)
        if len(common) and system != "truth":
            def norm(i, a=a, b=b, bc=bc, n=n):
                rand, top = t_rand[b][i].sum() / t_n[b][i].sum(), t_bc[b][i].sum() / t_n[b][i].sum()
                return (bc[a][i].sum() / n[a][i].sum() - rand) / (top - rand) if top - rand > 0.005 else np.nan
            rows.append(_row("bc_normalised", system, len(common),
                             (norm(np.arange(len(common))), *interval(norm, len(common), seed=seed))))
    return rows


def controls(gens: pd.DataFrame, movies: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """controls.parquet of an evaluation (see the module docstring)."""
    g = gens[heldout_movie_rows(gens)]
    rows = (sc_controls(g, seed) + baseline_controls(g, seed) + distinct_controls(g)
            + fact_controls(g, movies, seed) + endpoint_controls(gens, seed) + profile_controls(gens, seed))
    if "sc2" in g and g["sc2"].notna().any():  # the same SC controls under the second encoder
        g2 = g.assign(sc=g["sc2"], sc_random=g["sc2_random"], sc_raw=np.nan)
        rows += [r | {"measure": SECOND[r["measure"]]} for r in sc_controls(g2, seed) if r["measure"] in SECOND]
    out = pd.DataFrame(rows, columns=COLUMNS)
    out["n"] = out["n"].astype("int64")
    return out


def controls_summary(ctrl: pd.DataFrame) -> dict:
    """measure -> system -> [value, low, high, control], rounded: the manifest summary's copy."""
    def r(x):
        return None if x is None or not np.isfinite(x) else round(float(x), 3)

    out: dict = {}
    for row in ctrl.itertuples():
        out.setdefault(row.measure, {})[row.system] = [r(row.value), r(row.low), r(row.high), r(row.control)]
    return out


LABELS = [("sc", "SC against its own movie"), ("sc_shuffled", "SC against a shuffled movie"),
          ("specificity", "specificity (own - shuffled)"), ("specificity_ratio", "specificity / teacher's"),
          ("normalised", "normalised SC (0 random, 1 teacher)"), ("named", "share that named the movie"),
          ("sc_minus_baseline", "ELM SC - baseline's, same movies"),
          ("tasks_above_baseline", "share of tasks with ELM above the baseline"),
          ("summary_normalised", "normalised SC, held-out summaries"),
          ("endpoint_normalised", "normalised SC, interpolation ends (summaries)"),
          ("sc_raw", "SC before removing the name"), ("distinct", "distinct texts per task"),
          ("distinct_summary", "distinct summaries"), ("decade", "decade stated right"),
          ("genre_f1", "genre F1"), ("genre_precision", "genre precision"), ("genre_recall", "genre recall"),
          ("sc2", "second encoder: SC against its own movie"), ("sc_shuffled2", "second encoder: SC, shuffled"),
          ("specificity2", "second encoder: specificity"),
          ("specificity_ratio2", "second encoder: specificity / teacher's"),
          ("normalised2", "second encoder: normalised SC"),
          ("bc", "profiles: BC against the user's own CF ranking"), ("bc_shuffled", "profiles: BC, shuffled user"),
          ("bc_specificity", "profiles: BC specificity (own - shuffled)"),
          ("bc_normalised", "profiles: normalised BC (0 random, 1 teacher)")]
"""The measures in reading order, with what a person calls them."""
SYSTEM_NAMES = {"truth": "teacher", "facts": "decade + genres only", "popular": "popular titles"}


def _cell(row) -> str:
    if row is None or not np.isfinite(row.value):
        return "-"
    text = f"{row.value:.3f}"
    if np.isfinite(row.low):
        text += f" [{row.low:.3f}, {row.high:.3f}]"
    if np.isfinite(row.control):
        text += f" (shuffled {row.control:.3f})"
    return text


def controls_table(ctrl: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the controls as text cells: value [95% interval] (shuffled control)."""
    systems = [s for s in SYSTEMS if s in set(ctrl["system"])]
    header = ["measure (held-out movies, users)"] + [SYSTEM_NAMES.get(s, s)
                                                     for s in systems]
    rows = []
    for measure, label in LABELS:
        d = ctrl[ctrl["measure"] == measure]
        if d.empty:
            continue
        by = {r.system: r for r in d.itertuples()}
        rows.append([label] + [_cell(by.get(s)) for s in systems])
    return header, rows


def controls_text(ctrl: pd.DataFrame) -> str:
    header, rows = controls_table(ctrl)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["does the text follow the vector? (95% bootstrap intervals over movies; shuffled: the same texts "
             "against another movie)"]
    lines += [f"  {s}" for s in verdict(ctrl)]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def verdict(ctrl: pd.DataFrame) -> list[str]:
    """The controls in plain sentences, generated from the numbers: the first thing a reader should see."""
    by = {(r.measure, r.system): r for r in ctrl.itertuples()}

    def ci(r, pct: bool = False) -> str:
        f = (lambda x: f"{100 * x:.0f}%") if pct else (lambda x: f"{x:.3f}")
        return f"{f(r.value)} [{f(r.low)}, {f(r.high)}]" if np.isfinite(r.low) else f(r.value)

    out = []
    spec, teacher = by.get(("specificity", "elm")), by.get(("specificity", "truth"))
    if spec is not None and np.isfinite(spec.value):
        reads = np.isfinite(spec.low) and spec.low > 0
        line = (f"The ELM's text {'depends' if reads else 'does not measurably depend'} on its vector: "
                f"specificity (SC against its own movie minus against a shuffled one) {ci(spec)}"
                + ("" if reads else ", an interval that reaches 0"))
        if teacher is not None and np.isfinite(teacher.value) and ("specificity_ratio", "elm") in by:
            line += f"; the teacher's is {teacher.value:.3f}, so the ELM has {ci(by['specificity_ratio', 'elm'], True)} of it"
        out.append(line + ".")
    if ("normalised", "elm") in by:
        out.append(f"Normalised SC of the ELM {ci(by['normalised', 'elm'])} (0: as good as a text about another "
                   "movie, 1: as good as the teacher's text).")
    facts = by.get(("specificity_ratio", "facts"))
    if facts is not None and np.isfinite(facts.value) and ("normalised", "facts") in by:
        out.append(f"A text of only the movie's decade and genres (the template teacher without user tags) has "
                   f"{ci(facts, True)} of the teacher's specificity and normalised SC {ci(by['normalised', 'facts'])}: "
                   "what an ELM that states those facts perfectly, and nothing else, would score.")
    if ("normalised", "baseline") in by:
        named = by.get(("named", "baseline"))
        out.append(f"The text-only baseline, which reads the title, scores {ci(by['normalised', 'baseline'])} after "
                   "its sentences naming the movie and its title words were removed"
                   + (f" ({100 * named.value:.0f}% of its texts named it)" if named is not None else "") + ".")
    above, diff = by.get(("tasks_above_baseline", "elm")), by.get(("sc_minus_baseline", "elm"))
    if above is not None and diff is not None and np.isfinite(above.value):
        out.append(f"On the movies both answered, the ELM's text scores above the baseline's on "
                   f"{round(above.value * above.n)} of {above.n} tasks (resampling movies: "
                   f"{round(above.low * above.n)} to {round(above.high * above.n)}); SC difference {ci(diff)}.")
    dec, gen = by.get(("decade", "elm")), by.get(("genre_f1", "elm"))
    if dec is not None and gen is not None:
        out.append(f"Held-out summaries state the movie's decade {ci(dec, True)} of the time (against a shuffled "
                   f"movie: {100 * dec.control:.0f}%) and its genres with F1 {ci(gen)} (shuffled {gen.control:.3f}).")
    if ("distinct_summary", "elm") in by:
        d = by["distinct_summary", "elm"]
        out.append(f"{100 * d.value:.0f}% of the ELM's {d.n} held-out summaries are distinct texts.")
    ends, summ = by.get(("endpoint_normalised", "elm")), by.get(("summary_normalised", "elm"))
    if ends is not None and summ is not None and np.isfinite(ends.value):
        out.append(f"Interpolation's ends, the {ends.n} real movies its pairs start and end at, are summarised with "
                   f"normalised SC {ci(ends)}, held-out summaries with {ci(summ)}.")
    out += _second_encoder_verdict(by, ci)
    out += _profile_verdict(by, ci)
    return out


def _profile_verdict(by: dict, ci) -> list[str]:
    spec, norm = by.get(("bc_specificity", "elm")), by.get(("bc_normalised", "elm"))
    if spec is None or norm is None or not np.isfinite(spec.value):
        return []
    reads = np.isfinite(spec.low) and spec.low > 0
    line = (f"Held-out user profiles {'depend' if reads else 'do not measurably depend'} on their user: the ELM's "
            f"normalised BC is {ci(norm)}, its BC specificity (own user minus a shuffled one) {ci(spec)}")
    teacher = by.get(("bc_specificity", "truth"))
    if teacher is not None and np.isfinite(teacher.value):
        line += f" against the teacher's {teacher.value:.3f}"
    popular = by.get(("bc_normalised", "popular"))
    if popular is not None and np.isfinite(popular.value):
        line += (f"; one text naming the films most users like, given for every user, scores normalised BC "
                 f"{popular.value:.3f}, so BC is read beside its specificity")
    return [line + "."]


def _second_encoder_verdict(by: dict, ci) -> list[str]:
    """Whether the first encoder's conclusions hold under the second; a flag where they do not."""
    spec2 = by.get(("specificity2", "elm"))
    if spec2 is None or not np.isfinite(spec2.value):
        return []
    line = f"Under the second encoder the ELM's specificity is {ci(spec2)}"
    if ("normalised2", "elm") in by:
        line += f" and its normalised SC {ci(by['normalised2', 'elm'])}"
    flags = []
    spec = by.get(("specificity", "elm"))
    if spec is not None and np.isfinite(spec.low) and np.isfinite(spec2.low) and (spec.low > 0) != (spec2.low > 0):
        flags.append("whether the ELM's text depends on its vector")
    pairs = [(by.get((m, "elm")), by.get((m, "baseline"))) for m in ("normalised", "normalised2")]
    if all(e is not None and b is not None and np.isfinite(e.value) and np.isfinite(b.value) for e, b in pairs):
        (e1, b1), (e2, b2) = pairs
        if (e1.value > b1.value) != (e2.value > b2.value):
            flags.append("whether the ELM scores above the baseline")
    if flags:
        return [line + f". FLAG: {' and '.join(flags)} holds under one encoder only; read it as unsettled."]
    return [line + ": the conclusions above hold under both encoders."]
