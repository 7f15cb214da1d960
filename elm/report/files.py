"""What a report artifact holds, file by file (``REPORT_FILES``)::

    report/<v>/controls.parquet     does the text follow the vector: specificity, shuffled controls, facts
    report/<v>/per_task.parquet     SC of movie descriptions per task and split (generalisation)
    report/<v>/headline.parquet     the headline figures, one per row (section, name, system, n, value, ...)
    report/<v>/per_task_sc.png      normalised SC per task on held-out movies, ELM vs baseline
    report/<v>/interpolation.png    SC (movies) / BC (users) against the interpolation weight a
    report/<v>/cav.png              SC or BC and the attribute's score against the CAV step, per attribute
    report/<v>/history.parquet      headline numbers of every evaluate version in the store up to this one
    report/<v>/history.png          the same over time
    report/<v>/report.md            the page: tables, plots, example generations
    report/<v>/report.html          the same page as HTML, plots inline

A plot whose experiment was not run is not written, and the page says so.
"""

from __future__ import annotations

CONTROLS_FILE = "controls.parquet"
PER_TASK_FILE = "per_task.parquet"
HEADLINE_FILE = "headline.parquet"
PER_TASK_PNG = "per_task_sc.png"
INTERPOLATION_PNG = "interpolation.png"
CAV_PNG = "cav.png"
HISTORY_FILE = "history.parquet"
HISTORY_PNG = "history.png"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"

REPORT_FILES = {
    CONTROLS_FILE: "does the text follow the vector: measure, system, n, value, low, high (95% bootstrap interval "
                   "over movies), control (the shuffled control); absent for an evaluation made before controls",
    PER_TASK_FILE: "SC of movie descriptions per task: split (heldout|train), task, n, elm, baseline, truth, random, "
                   "elm_normalised, baseline_normalised, and their 95% bootstrap intervals over movies "
                   "(elm_normalised_low/high, baseline_normalised_low/high), and elm_minus_baseline: the ELM's SC minus "
                   "the baseline's on the movies both answered (with _low/_high)",
    HEADLINE_FILE: "the headline figures: section, name, system, n, value, random, truth, normalised "
                   "(n counts what the value averages: tasks, pairs, examples or held-out entities)",
    PER_TASK_PNG: "normalised SC per task on held-out movies, ELM vs baseline",
    INTERPOLATION_PNG: "mean SC (movies) / BC (users) over pairs against the interpolation weight a, with references "
                       "(absent when interpolation was not run)",
    CAV_PNG: "per attribute: SC or BC and the attribute's score against the CAV step (absent when CAVs were not run)",
    HISTORY_FILE: "every evaluate version in the store made up to the reported one, oldest first: created_at, "
                  "evaluate, train, sc_normalised_elm, sc_normalised_baseline (pooled, held-out movies), "
                  "bc_normalised_elm (held-out users), sc_elm, tasks",
    HISTORY_PNG: "normalised SC and BC of every evaluation over time (absent when none has scores)",
    REPORT_MD: "the page: headline, per-task table, plots, CAV classifiers, example generations",
    REPORT_HTML: "the same page as HTML; plots inline by relative path",
}
"""What lands in a report artifact, file by file."""
