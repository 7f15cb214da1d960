"""Vector guidance's cost: the same held-out summaries decoded plainly and guided, in the same run.

    .venv/bin/python bench/bench_guidance.py [--from train=VERSION] [--movies 32] [--scales 1,2]
                                             [--batch-size 16] [--repeats 2]

Needs a trained ELM in the store (`make run` or `elm train`; default: the latest train artifact). Every
scale describes the same held-out movies (the splits the ELM was trained with) with the summary task, in
the evaluation's dtype; the first scale is the baseline the ratios are taken against. Scales are run in
turn, --repeats times, so a load change on the machine hits them alike; the best time of each is kept.
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
    ap.add_argument("--from", dest="version", default=None, help="train=VERSION (default: the latest)")
    ap.add_argument("--movies", type=int, default=32, help="held-out movies described (default 32)")
    ap.add_argument("--scales", default="1,2", help="movie guidance scales; the first is the baseline (default 1,2)")
    ap.add_argument("--batch-size", type=int, default=16, help="texts per generate call (default 16)")
    ap.add_argument("--repeats", type=int, default=2, help="rounds over the scales (default 2)")
    a = ap.parse_args()

    import pandas as pd
    import torch

    from elm.artifacts import ArtifactStore
    from elm.evaluate.config import SUMMARY_TASK
    from elm.lineage import resolve_lineage
    from elm.model.base_lm import inference_dtype
    from elm.serve.describe import Describer
    from elm.settings import artifacts_dir

    store = ArtifactStore(artifacts_dir())
    version = (a.version or "train=").split("=", 1)[1] or None
    d = Describer.from_train(store, version)
    d.elm.to(getattr(torch, inference_dtype("auto")))
    train = store.resolve("train", version)
    splits = resolve_lineage(train, ["splits"], store=store)["splits"]
    split = pd.read_parquet(splits.file("movies.parquet")).set_index("movieId")["split"]
    table = d.table(d.default_space("movie"))
    held = [int(m) for m in table.vectors.ids if split.get(m) == "heldout"][:a.movies]
    scales = [float(s) for s in a.scales.split(",")]
    print(f"train {train.version}, {len(held)} held-out movies, summary task, batch {a.batch_size}, "
          f"dtype {d.elm.lm.dtype}")

    d.describe(SUMMARY_TASK, movies=held[:2], max_new_tokens=4)  # warm-up
    best: dict[float, float] = {}
    texts: dict[float, list[str]] = {}
    for _ in range(a.repeats):
        for s in scales:
            t = time.perf_counter()
            answers = d.describe(SUMMARY_TASK, movies=held, batch_size=a.batch_size,
                                 guidance_scale={"movie": s, "user": 1.0})
            best[s] = min(best.get(s, float("inf")), time.perf_counter() - t)
            texts[s] = [x.text for x in answers]
            print(f"  scale {s:g}: {best[s]:.1f}s (load {os.getloadavg()[0]:.1f})", flush=True)
    base = best[scales[0]]
    print(f"\n{'scale':>6}{'seconds':>9}{'words/text':>12}{'time vs ' + format(scales[0], 'g'):>12}")
    for s in scales:
        words = sum(len(x.split()) for x in texts[s]) / max(len(texts[s]), 1)
        print(f"{s:>6g}{best[s]:>9.1f}{words:>12.1f}{best[s] / base:>11.2f}x")
    print(f"\n{os.cpu_count()} cores, torch threads {torch.get_num_threads()}; load average now "
          f"{os.getloadavg()[0]:.1f} (other processes slow it)")
    for s in scales:
        print(f"  scale {s:g}: {texts[s][0]}")


if __name__ == "__main__":
    main()
