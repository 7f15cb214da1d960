"""Entry point that ``accelerate launch`` runs in every process: two-stage ELM training into a work folder.

    accelerate launch --config_file configs/accelerate/cpu.yaml -m elm.train.script \\
        --work-dir runs/elm1 --synthesize latest --artifacts artifacts [--config train.json] [--resume]

The ``train`` stage (elm/train/stage.py, ``elm train``) runs exactly this as a subprocess and publishes the
work folder as an artifact; run it by hand to train outside the artifact store (e.g. on a GPU box with
``--config_file configs/accelerate/multi_gpu.yaml``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from elm.settings import apply_env_defaults

apply_env_defaults()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m elm.train.script",
        description="Train an ELM in two stages (adapters only, then everything or LoRA) into --work-dir: "
        "checkpoints/, stage1/, elm/, curves.parquet, curves.png, summary.json. Launch it with "
        "`accelerate launch [--config_file configs/accelerate/cpu.yaml] -m elm.train.script ...`; "
        "plain `python -m elm.train.script` runs one process.",
    )
    p.add_argument("--work-dir", type=Path, required=True, help="Folder for checkpoints and outputs.")
    p.add_argument("--config", type=Path, default=None,
                   help="JSON file with TrainConfig fields (elm/train/stage.py); default: TrainConfig().")
    p.add_argument("--synthesize", default="latest",
                   help="synthesize artifact: a folder, or a version (prefix) / 'latest' in --artifacts.")
    p.add_argument("--from", dest="pins", action="append", default=[], metavar="STAGE=REF",
                   help="a vector artifact as stage=folder or stage=version, e.g. semantic=3f2a (repeatable); "
                   "default: the ones synthesize was made from.")
    p.add_argument("--artifacts", type=Path, default=None,
                   help="Artifact store for versions and the packaged base model [env ELM_ARTIFACTS_DIR, "
                   "default ./artifacts].")
    p.add_argument("--resume", action="store_true",
                   help="Continue from the newest checkpoint in --work-dir (exactly: same final weights as an "
                   "uninterrupted run). Without it, an existing checkpoint is an error.")
    return p.parse_args(argv)


def resolve(store, stage: str, ref: str | None):
    """An artifact from a folder path, or from a version (prefix) or 'latest' in the store."""
    from elm.train.data import load_artifact

    if ref is not None and Path(ref).is_dir():
        return load_artifact(Path(ref))
    return store.resolve(stage, ref)


def main(argv: list[str] | None = None) -> int:
    from elm.artifacts import ArtifactError, ArtifactStore, open_store
    from elm.train.config import TrainConfig, TrainingError
    from elm.lineage import check_pins
    from elm.train.data import input_artifacts, load_data
    from elm.train.stage import TRAIN
    from elm.train.loop import fit
    from elm.train.process import die_with_parent_if_asked, failure_line

    args = parse_args(argv)
    die_with_parent_if_asked()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    # One voice: with several processes only the first one logs progress.
    logging.getLogger("elm").setLevel(logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING)
    try:
        cfg = TrainConfig.load(args.config) if args.config else TrainConfig()
        store = open_store(args.artifacts)
        synth = resolve(store, "synthesize", args.synthesize)
        pins = dict(p.split("=", 1) for p in args.pins)
        check_pins(TRAIN, pins)
        # Versions named by synthesize live in the store it was published in.
        home = ArtifactStore(synth.path.parent.parent)
        data = load_data(cfg, input_artifacts(synth, {k: resolve(home, k, ref) for k, ref in pins.items()}))
        summary = fit(cfg, data, args.work_dir, resume=args.resume, store=store)
    except (TrainingError, ArtifactError, ValueError) as e:
        logging.getLogger("elm.train.script").error("%s", failure_line(e))
        return 2
    logging.getLogger("elm.train.script").info("done: %s", json.dumps(summary["val_loss"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
