"""Two-stage ELM training (docs/METHOD.md "Training"), run under ``accelerate launch``, and the ``train`` stage.

    stage 1   adapters only, LM frozen (gradients still flow through it to the slots), lr ~3e-3
    stage 2   everything (or LoRA on the LM + adapters), a new optimizer and schedule, lr ~5e-5

Files, top to bottom:

    config.py        StageConfig, TrainConfig: frozen, validated, JSON round trip; TrainingError
    data.py          synthesize rows -> Examples (vectors per slot); deterministic batches from (seed, stage, step)
    checkpoints.py   atomic folders: trainable weights (safetensors), optimizer/scheduler, RNG, state.json
    loop.py          fit: the loop itself (what elm/train/script.py runs in every process)
    stage.py         train(): ArtifactStore.produce(...) whose build runs ``accelerate launch`` as a subprocess

Resume is exact: batches are a pure function of (seed, stage, step), and a checkpoint holds everything
else that changes (trainable weights, optimizer, scheduler, RNG), so a killed run continued from its last
checkpoint ends with the same weights as one that never stopped.

The ``train`` artifact:

    elm/                 the final ELM, base LM included (ELM.load(path))
    stage1/              the ELM after stage 1: adapters only, reads config.base_model
    train_config.json    the TrainConfig
    curves.parquet       stage, step, split (train|val), loss, lr, tokens_per_s
    curves.png           train and validation loss per stage
    summary.json         val_loss {untrained, after_stage1, after_stage2}, per stage steps/seconds/tokens/s,
                         examples used and dropped (also the manifest's summary)
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from elm.embed.spaces import SPACE_STAGES
from elm.lineage import StageSpec, publish
from elm.train.checkpoints import list_checkpoints
from elm.train.config import TrainConfig, TrainingError, accelerate_config_path
from elm.train.data import input_artifacts
from elm.train.process import DIE_WITH_PARENT_ENV, failure_in, note, parent_death_hook, work_lock
from elm.train.loop import CHECKPOINTS, CONFIG_FILE, CURVES_FILE, CURVES_PNG, ELM_DIR, STAGE1_DIR, SUMMARY_FILE

if TYPE_CHECKING:
    from elm.artifacts import Artifact, ArtifactStore

log = logging.getLogger(__name__)

# code_version 2: a warm-started adapter trains at the LM's rate in stage 2 (same config, another model);
# 3: the user adapter is warm-started too (from captions of each user's favourites)
# 4: a movie's caption states its year, not its decade (warm_start.movie_caption)
TRAIN = StageSpec("train", inputs=("synthesize", *SPACE_STAGES), code_version="4",
                  files=(f"{ELM_DIR}/", f"{STAGE1_DIR}/", CURVES_FILE, CURVES_PNG, CONFIG_FILE, SUMMARY_FILE))
PUBLISHABLE = {".safetensors", ".json", ".parquet", ".png", ".jinja", ".txt"}
"""File types a train artifact may hold: no pickles (optimizer state stays in the deleted checkpoints)."""


def launch_command(cfg: TrainConfig, work_dir: Path, arts: dict[str, Artifact], store: ArtifactStore,
                   resume: bool) -> list[str]:
    """``accelerate launch`` of elm.train.script, with the interpreter that runs us."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch",
           "--config_file", str(accelerate_config_path(cfg.accelerate_config)),
           "-m", "elm.train.script", "--work-dir", str(work_dir), "--config", str(work_dir / CONFIG_FILE),
           "--artifacts", str(store.root)]
    cmd += ["--synthesize", str(arts["synthesize"].path)]
    for k in TRAIN.inputs[1:]:
        cmd += ["--from", f"{k}={arts[k].path}"]
    return cmd + (["--resume"] if resume else [])


def run_logged(cmd: list[str], env: dict | None = None, tail: int = 40, lock_fd: int | None = None) -> None:
    """Run cmd, streaming its output line by line to this module's logger; TrainingError with the tail on failure.

    The process dies with ours, even by kill -9 (elm/train/process.py); ``lock_fd`` (a work_lock) is inherited
    by it, so the lock outlives us as long as it runs."""
    lines: collections.deque[str] = collections.deque(maxlen=tail)
    failure = None  # the script's own error (cause and fix): repeated last, below the launcher's traceback
    # Passive OpenMP waits: on a CPU shared with other work, spinning threads slowed steps 5x here.
    defaults = {"OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    full_env = {**defaults, **os.environ, "PYTHONUNBUFFERED": "1", DIE_WITH_PARENT_ENV: "1", **(env or {})}
    log.info("launching: %s", " ".join(cmd))
    # Own process group: if we are interrupted, the launcher and its workers go down with us.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            env=full_env, start_new_session=True, preexec_fn=parent_death_hook(),
                            pass_fds=() if lock_fd is None else (lock_fd,))
    if lock_fd is not None:
        note(lock_fd, f"pid {os.getpid()} (elm train), launcher pid {proc.pid}")
    try:
        for line in proc.stdout:  # text mode: tqdm's \r redraws arrive as separate lines
            line = line.rstrip()
            if line:
                lines.append(line)
                failure = failure_in(line) or failure
                log.info("%s", line)
        rc = proc.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        raise
    if rc != 0:
        raise TrainingError(f"training exited with status {rc}; last {len(lines)} lines of its output:\n"
                            + "\n".join(lines) + (f"\n{failure}" if failure else ""))


def check_publishable(path: Path) -> None:
    bad = [p.relative_to(path).as_posix() for p in path.rglob("*")
           if p.is_file() and p.suffix not in PUBLISHABLE and p.name != "manifest.json"]
    if bad:
        raise TrainingError(f"refusing to publish {path}: unexpected file types {bad[:5]} "
                            f"(allowed: {sorted(PUBLISHABLE)})")


def train(arts: dict[str, Artifact], cfg: TrainConfig, store: ArtifactStore,
          env: dict | None = None) -> tuple[Artifact, bool]:
    """The train artifact for a synthesize artifact (and the semantic/behavioral ones it was made from).

    arts: "synthesize" and optionally "semantic"/"behavioral" (default: the versions synthesize names).
    An interrupted build resumes from its last checkpoint when called again. ``env`` is added to the
    launched process's environment.
    """
    from elm.model.base_lm import resolve_model_path

    if "synthesize" not in arts:
        raise TrainingError("train needs a synthesize artifact (run `elm synthesize` first)")
    synth = arts["synthesize"]
    full = input_artifacts(synth, arts)

    def build(work) -> None:
        if (work.path / SUMMARY_FILE).exists() and not list_checkpoints(work.path / CHECKPOINTS):
            log.info("train: %s already holds a finished run; publishing it", work.path)
        else:
            resolve_model_path(cfg.base_model, store)  # converts the packaged default once, before the launch
            cfg.save(work.path / CONFIG_FILE)
            with work_lock(work.path) as lock:
                resume = bool(list_checkpoints(work.path / CHECKPOINTS))
                if resume:
                    log.info("train: resuming from the checkpoints in %s", work.path / CHECKPOINTS)
                run_logged(launch_command(cfg, work.path, full, store, resume), env, lock_fd=lock)
        # Checkpoints hold pickled optimizer state and full weights: never part of the artifact.
        shutil.rmtree(work.path / CHECKPOINTS, ignore_errors=True)
        check_publishable(work.path)
        work.summary.update(json.loads((work.path / SUMMARY_FILE).read_text()))

    return publish(store, TRAIN, full, cfg.to_dict(), build, resumable=True)


def report(art: Artifact) -> str:
    """Validation losses and speed of a train artifact, and where the model is."""
    s = art.summary
    v = {k: ("-" if x is None else f"{x:.4f}") for k, x in s.get("val_loss", {}).items()}
    lines = [f"train {art.version}: validation loss (held-out) untrained {v.get('untrained')}, "
             f"after stage 1 {v.get('after_stage1')}, after stage 2 {v.get('after_stage2')}"]
    for name, st in s.get("stages", {}).items():
        lines.append(f"  {name}: {st['steps']} steps in {st['seconds']:.0f} s ({st['tokens_per_s'] or 0:.0f} tokens/s)"
                     f"{', LoRA' if st.get('lora') else ''}")
    ex = s.get("examples", {})
    lines.append(f"  examples: {ex.get('train')} train, {ex.get('val')} validation, dropped {ex.get('dropped')}")
    lines.append(f"  model: {art.path / ELM_DIR}   (stage 1 adapters: {art.path / STAGE1_DIR})")
    lines.append(f"  curves: {art.path / CURVES_PNG}")
    return "\n".join(lines)
