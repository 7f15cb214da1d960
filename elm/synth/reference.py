"""The reference SC: how well the teacher's own texts match the vectors they describe.

Evaluation later measures the ELM against these numbers, task by task: ``sc_truth`` is the best an ELM
trained on these targets can be expected to reach, ``sc_random`` what a text about another movie gets.
"""

from __future__ import annotations

import pandas as pd

from elm import vectors as vec
from elm.embed.splits import HELDOUT
from elm.metrics.semantic_consistency import cosine_rows, encode_texts, mix, random_partner


def reference_sc(examples: pd.DataFrame, semantic: vec.Vectors, encoder: str, seed: int = 0) -> pd.DataFrame:
    """Per movie task, on held-out movies: mean SC of the teacher's targets against their own semantic vector
    (sc_truth) and against a random other held-out example's vector of the same task (sc_random)."""
    held = examples[(examples["split"] == HELDOUT) & (examples["kind"] == "movie")].reset_index(drop=True)
    cols = ["task", "n", "sc_truth", "sc_random"]
    if held.empty:
        return pd.DataFrame(columns=cols)
    a = semantic.get(held["entity_id"])
    has_b = held["partner_id"].notna().to_numpy()
    target = a.copy()
    if has_b.any():
        target[has_b] = mix(a[has_b], semantic.get(held.loc[has_b, "partner_id"].astype("int64")))
    enc = encode_texts(held["target"].tolist(), encoder)
    sc = cosine_rows(enc, target)
    rows = []
    for task, idx in held.groupby("task", sort=False).indices.items():
        if len(idx) < 2:
            rows.append((task, len(idx), float(sc[idx].mean()), float("nan")))
            continue
        other = idx[random_partner(len(idx), seed)]
        rows.append((task, len(idx), float(sc[idx].mean()), float(cosine_rows(enc[idx], target[other]).mean())))
    return pd.DataFrame(rows, columns=cols)


def reference_table(ref: pd.DataFrame, teacher: str = "") -> str:
    """The reference SC as a text table, with the mean over tasks."""
    if ref.empty:
        return "reference SC: no held-out movie targets"
    lines = [f"reference SC on held-out movies{f' ({teacher})' if teacher else ''}: "
             "teacher text vs own vector (truth) and vs a random movie's (random)",
             f"  {'task':<32}{'n':>4}{'truth':>8}{'random':>8}{'gap':>8}"]
    for r in ref.itertuples():
        lines.append(f"  {r.task:<32}{r.n:>4}{r.sc_truth:>8.3f}{r.sc_random:>8.3f}{r.sc_truth - r.sc_random:>8.3f}")
    lines.append(f"  {'mean over tasks':<32}{int(ref['n'].sum()):>4}{ref['sc_truth'].mean():>8.3f}"
                 f"{ref['sc_random'].mean():>8.3f}{(ref['sc_truth'] - ref['sc_random']).mean():>8.3f}")
    return "\n".join(lines)
