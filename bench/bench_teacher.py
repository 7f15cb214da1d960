"""The local teacher on real teacher prompts: batched generation against one prompt at a time, same run.

    .venv/bin/python bench/bench_teacher.py [--movies 32] [--tasks summary] [--batch-sizes 1,8,16,32]
                                            [--max-new-tokens 96] [--threads N]

The embedded SmolLM2-135M-Instruct (converted into the artifact store once, a cache hit after) writes
greedy targets for the most-rated movies of the embedded ml-latest-small, each prompt rendered from
entity_facts.movie_facts exactly as the synthesis stage renders it. Every batch size runs the same
prompts; the first in --batch-sizes is the baseline the ratios are taken against. "same text" counts the
outputs identical to the baseline's: greedy text should not depend on batching (padding noise in float32
can flip a near-tie token now and then, after which the two texts diverge).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from elm.settings import apply_env_defaults  # noqa: E402

apply_env_defaults()

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--movies", type=int, default=32, help="most-rated movies to prompt for (default 32)")
    ap.add_argument("--tasks", default="summary", help="comma-separated task names (default summary)")
    ap.add_argument("--batch-sizes", default="1,8,16,32", help="first one is the baseline (default 1,8,16,32)")
    ap.add_argument("--max-new-tokens", type=int, default=96, help="budget of every prompt (default 96)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    a = ap.parse_args()

    import pandas as pd
    import torch

    from elm.artifacts import ArtifactStore
    from elm.model.base_lm import DEFAULT_BASE_MODEL, resolve_model_path
    from elm.synth.facts import movie_facts
    from elm.data.ingest import IngestConfig, ingest
    from elm.settings import artifacts_dir, data_dir
    from elm.synth.catalog import get_task, render_teacher_prompt
    from elm.synth.teachers.local import LocalTeacher, LocalTeacherConfig

    store = ArtifactStore(artifacts_dir())
    t = time.perf_counter()
    model = resolve_model_path(DEFAULT_BASE_MODEL, store)
    art, _ = ingest(IngestConfig(), store, data_dir())
    tables = {n: pd.read_parquet(art.file(f"{n}.parquet")) for n in ("movies", "tags", "ratings")}
    top = tables["ratings"].groupby("movieId").size().sort_values(ascending=False, kind="stable").index[:a.movies]
    facts = movie_facts(tables["movies"], tables["tags"]).set_index("movieId", drop=False).loc[top]
    tasks = [get_task(name) for name in a.tasks.split(",")]
    jobs = [(task.name, row) for task in tasks for row in facts.to_dict("records")]
    prompts = [render_teacher_prompt(get_task(name), row) for name, row in jobs]
    budgets = [a.max_new_tokens] * len(prompts)
    print(f"model {model}, {len(prompts)} prompts ({len(facts)} movies x {a.tasks}), "
          f"max_new_tokens {a.max_new_tokens}; setup {time.perf_counter() - t:.1f}s")

    sizes = [int(b) for b in a.batch_sizes.split(",")]
    runs = {}
    for b in sizes:
        teacher = LocalTeacher(LocalTeacherConfig(model=model, batch_size=b, threads=a.threads))
        teacher.complete(prompts[:1], [4])  # warm-up: first-call allocations and kernel selection
        out = teacher.complete(prompts, budgets)
        runs[b] = (out, teacher.last_stats)
        s = teacher.last_stats
        print(f"  batch {b:>3}: {s['seconds']:6.1f}s, {s['new_tokens']} new tokens, load {os.getloadavg()[0]:.1f}",
              flush=True)
    settings = teacher.settings

    base_out, base = runs[sizes[0]]
    print(f"\n{'batch':>5}{'seconds':>9}{'ex/s':>8}{'new tok':>9}{'tok/s':>8}{'ex/s vs b=' + str(sizes[0]):>14}"
          f"{'same text':>11}")
    for b, (out, s) in runs.items():
        same = sum(x == y for x, y in zip(out, base_out))
        print(f"{b:>5}{s['seconds']:>9.1f}{s['examples_per_s']:>8.2f}{s['new_tokens']:>9}{s['tokens_per_s']:>8.1f}"
              f"{s['examples_per_s'] / base['examples_per_s']:>13.2f}x{same:>7}/{len(out)}")
    print(f"\n{os.cpu_count()} cores, torch threads {torch.get_num_threads()}, greedy, "
          f"repetition_penalty {settings['repetition_penalty']}, no_repeat_ngram_size "
          f"{settings['no_repeat_ngram_size']}; load average now {os.getloadavg()[0]:.1f} (other processes slow it)")

    print("\nsample outputs (largest batch):")
    out = runs[sizes[-1]][0]
    for i in range(min(3, len(out))):
        name, row = jobs[i]
        print(f"  [{name}] {row['title']}\n    {out[i]}")


if __name__ == "__main__":
    main()
