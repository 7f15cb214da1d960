"""The two-stage training loop, ``fit`` (what elm/train/script.py runs in every launched process), and what
it writes into the work folder: checkpoints, the stage 1 and final ELMs, curves and summary.json."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from elm.model.batch import IGNORE_INDEX
from elm.train.checkpoints import list_checkpoints, load_checkpoint, read_checkpoint, save_checkpoint
from elm.train.config import CheckpointError, StageConfig, TrainConfig, TrainingError
from elm.train.data import TrainData, batch_indices

if TYPE_CHECKING:
    from elm.artifacts import ArtifactStore
    from elm.model.elm import ELM

log = logging.getLogger(__name__)

# The work folder fit fills: elm/train/stage.py publishes it as the train artifact.
CONFIG_FILE = "train_config.json"
SUMMARY_FILE = "summary.json"
CURVES_FILE = "curves.parquet"
CURVES_PNG = "curves.png"
STAGE1_DIR = "stage1"
ELM_DIR = "elm"
CHECKPOINTS = "checkpoints"
KILL_ENV = "ELM_TRAIN_KILL_AT"
"""Fault injection for resume tests: "STAGE:STEP" makes the process SIGKILL itself right after that step's
update, before its checkpoint (so resuming must redo it)."""


def lr_factor(sc: StageConfig, step: int) -> float:
    """Linear warmup, then cosine decay to min_lr_ratio at the last step."""
    if step < sc.warmup_steps:
        return (step + 1) / sc.warmup_steps
    progress = (step - sc.warmup_steps) / max(1, sc.steps - sc.warmup_steps)
    return sc.min_lr_ratio + (1 - sc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _to_device(batch: dict, device) -> dict:
    out = {k: v.to(device) for k, v in batch.items() if k != "slot_vectors"}
    out["slot_vectors"] = {k: v.to(device) for k, v in batch["slot_vectors"].items()}
    return out


def _evaluate(model, batches: list[dict], accelerator) -> float:
    """Token-weighted mean cross-entropy of the targets over the validation subset (all processes)."""
    import torch

    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    with torch.no_grad():
        for batch in batches:
            n = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()  # HF shifts labels by one
            loss = model(**_to_device(batch, accelerator.device), target_logits_only=True).loss
            total += torch.stack([loss.double() * n, n.double().to(total.device)])
    model.train()
    total = accelerator.reduce(total, "sum")
    return float(total[0] / total[1]) if total[1] > 0 else float("nan")


def _setup_stage(elm: ELM, n: int, sc: StageConfig) -> None:
    if n == 1:
        elm.freeze_base()
        return
    if sc.lora:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=sc.lora_r, lora_alpha=sc.lora_alpha, lora_dropout=sc.lora_dropout,
                          target_modules=list(sc.target_modules), task_type="CAUSAL_LM")
        with warnings.catch_warnings():  # peft 0.21 reads a property transformers 5 deprecates
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
            elm.lm = get_peft_model(elm.lm, lora)
        elm.adapters.requires_grad_(True)  # get_peft_model freezes only the LM; the adapters keep learning
    else:
        elm.unfreeze_base()


def _optimizer(elm: ELM, sc: StageConfig, warm: tuple[str, ...] = ()):
    """AdamW over what the stage trains: the LM and warm-started adapters (``warm``) at ``lr``, adapters that
    started random at ``adapter_lr``."""
    import torch

    params = [p for p in elm.parameters() if p.requires_grad]
    fast = {id(p) for name, a in elm.adapters.items() if name not in warm for p in a.parameters()}
    groups = []  # the LM's groups first: the logged lr is the first group's
    for lr, ps in ((sc.lr, [p for p in params if id(p) not in fast]),
                   (sc.adapter_lr or sc.lr, [p for p in params if id(p) in fast])):
        groups += [{"params": [p for p in ps if p.ndim >= 2], "weight_decay": sc.weight_decay, "lr": lr},
                   {"params": [p for p in ps if p.ndim < 2], "weight_decay": 0.0, "lr": lr}]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=sc.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(sc, s))
    return opt, sched


def fit(cfg: TrainConfig, data: TrainData, work_dir: Path, *, resume: bool = False,
        store: ArtifactStore | None = None) -> dict:
    """Train stage 1 then stage 2 in ``work_dir``; returns the summary. Runs in every launched process."""
    import torch
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from tqdm.auto import tqdm

    from elm.model.elm import ELM
    from elm.train.warm_start import warm_start_adapter

    work_dir = Path(work_dir)
    # A batch may hold no vector of some space (e.g. no user row): DDP must allow unused adapters.
    acc = Accelerator(mixed_precision=None if cfg.mixed_precision == "auto" else cfg.mixed_precision,
                      kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    main = acc.is_main_process
    ckpt_root = work_dir / CHECKPOINTS
    found = list_checkpoints(ckpt_root)
    if found and not resume:
        raise TrainingError(f"{work_dir} already holds checkpoints (latest {found[-1].name}): pass --resume to "
                            f"continue that run, or delete {ckpt_root} to start over")
    fingerprint = json.dumps(cfg.to_dict(), sort_keys=True)
    state = {"stage": 1, "step": 0, "val": {}, "curves": [], "seconds": {}, "tokens": {},
             "config": fingerprint, "world": acc.num_processes}
    restore = None  # the checkpoint to load once its stage is set up
    if found:
        restore = found[-1]
        state = read_checkpoint(restore)
        if state.get("config") != fingerprint or state.get("world") != acc.num_processes:
            raise CheckpointError(f"checkpoint {restore} was made with another config or number of processes "
                                  f"({state.get('world')}); delete {ckpt_root} to start over")
        log.info("resuming from %s (stage %d, step %d)", restore.name, state["stage"], state["step"])
    elif resume:
        log.info("no checkpoint in %s: starting from scratch", ckpt_root)

    torch.manual_seed(cfg.seed)
    elm = ELM.from_base(cfg.elm_config(data.spaces), store, samples=data.samples).to(acc.device)
    warm = tuple(w["space"] for w in data.warm_start)
    if restore is None:  # a restored checkpoint brings its own adapters
        state["warm_start"] = [warm_start_adapter(elm, w["space"], w["vectors"], w["captions"], cfg.warm_start_ridge,
                                                  cfg.warm_start_epochs, cfg.seed)
                               for w in data.warm_start]
    elm.train()
    collate = elm.collator()
    lengths = [len(e.prompt) + len(e.target or "") for e in data.train]  # characters: close enough to tokens
    # Sorted by length so eval batches carry little padding; the loss is token-weighted, so order is moot.
    val = sorted(data.val, key=lambda e: len(e.target))[acc.process_index::acc.num_processes]
    bs = cfg.stage1.batch_size
    val_batches = [collate(val[i:i + bs]) for i in range(0, len(val), bs)]

    def record(stage: int, step: int, split: str, loss: float, lr: float = math.nan, tps: float = math.nan):
        state["curves"].append({"stage": stage, "step": step, "split": split, "loss": loss, "lr": lr,
                                "tokens_per_s": tps})

    def validate(stage: int, step: int, key: str | None = None) -> None:
        if not data.val:
            return
        with acc.autocast():
            loss = _evaluate(elm, val_batches, acc)
        record(stage, step, "val", loss)
        if key:
            state["val"][key] = loss
        log.info("validation loss %s: %.4f", key or f"at stage {stage} step {step}", loss)

    if "untrained" not in state["val"]:
        validate(1, 0, "untrained")
    kill_at = os.environ.get(KILL_ENV)

    for n in (1, 2):
        sc, key = cfg.stage(n), f"s{n}"
        if state["stage"] > n:
            continue
        torch.manual_seed(cfg.seed * 1000 + n)  # each stage's RNG starts from the seed, not from the last stage
        _setup_stage(elm, n, sc)
        opt, sched = _optimizer(elm, sc, warm)  # new each stage: no optimizer state leaks from stage 1 into stage 2
        model, opt = acc.prepare(elm, opt)
        if restore is not None:
            load_checkpoint(restore, elm, opt, sched, acc)
            restore = None
        bar = tqdm(total=sc.steps, initial=state["step"], desc=f"stage {n}", disable=not main, mininterval=1.0,
                   dynamic_ncols=True, file=sys.stderr)
        for step in range(state["step"], sc.steps):
            t0 = time.perf_counter()
            totals = torch.zeros(2, dtype=torch.float64, device=acc.device)
            for a in range(sc.grad_accum):
                idx = batch_indices(len(data.train), sc.batch_size, cfg.seed, n, step * sc.grad_accum + a,
                                    acc.process_index, acc.num_processes, lengths, cfg.length_group)
                batch = _to_device(collate([data.train[i] for i in idx]), acc.device)
                last = a == sc.grad_accum - 1
                with contextlib.nullcontext() if last else acc.no_sync(model):
                    loss = model(**batch, target_logits_only=True).loss
                    acc.backward(loss / sc.grad_accum)
                totals += torch.stack([loss.detach().double(), batch["attention_mask"].sum().double()])
            if sc.max_grad_norm is not None:
                acc.clip_grad_norm_([p for p in elm.parameters() if p.requires_grad], sc.max_grad_norm)
            lr = sched.get_last_lr()[0]
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            totals = acc.reduce(totals, "sum")
            dt = time.perf_counter() - t0
            loss_, tokens = float(totals[0]) / (sc.grad_accum * acc.num_processes), int(totals[1])
            state["step"] = step + 1
            state["seconds"][key] = state["seconds"].get(key, 0.0) + dt
            state["tokens"][key] = state["tokens"].get(key, 0) + tokens
            record(n, step + 1, "train", loss_, lr, tokens / dt)
            bar.set_postfix(loss=f"{loss_:.3f}", tok_s=f"{tokens / dt:.0f}", lr=f"{lr:.1e}", refresh=False)
            bar.update(1)
            if kill_at == f"{n}:{step + 1}":  # after the step, before its eval and checkpoint
                log.warning("%s=%s: killing this process (SIGKILL) to test resume", KILL_ENV, kill_at)
                os.kill(os.getpid(), signal.SIGKILL)
            if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < sc.steps:
                validate(n, step + 1)
            if (cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0) or step + 1 == sc.steps:
                save_checkpoint(ckpt_root, state, elm, opt, sched, acc, cfg.keep_checkpoints)
        bar.close()
        validate(n, sc.steps, f"after_stage{n}")
        if n == 1 and main:
            elm.save(work_dir / STAGE1_DIR, include_base=False)
        if n == 2 and sc.lora:
            elm.lm = elm.lm.merge_and_unload()  # the saved ELM is a plain model: loading it needs no peft
        acc.unwrap_model(model, keep_fp32_wrapper=False)  # undo prepare's forward patch before the next prepare
        acc.free_memory()
        state.update(stage=n + 1, step=0)

    summary = _summary(cfg, data, state, acc)
    if main:
        elm.save(work_dir / ELM_DIR, include_base=True)
        cfg.save(work_dir / CONFIG_FILE)
        write_curves(state["curves"], work_dir, summary["val_loss"])
        tmp = work_dir / (SUMMARY_FILE + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        os.replace(tmp, work_dir / SUMMARY_FILE)  # written last: its presence means the run is complete
    acc.wait_for_everyone()
    return summary


def _summary(cfg: TrainConfig, data: TrainData, state: dict, acc) -> dict:
    stages = {}
    for n in (1, 2):
        key, sc = f"s{n}", cfg.stage(n)
        seconds, tokens = state["seconds"].get(key, 0.0), state["tokens"].get(key, 0)
        train = [r["loss"] for r in state["curves"] if r["stage"] == n and r["split"] == "train"]
        stages[f"stage{n}"] = {"steps": sc.steps, "seconds": round(seconds, 2),
                               "tokens_per_s": round(tokens / seconds, 1) if seconds else None,
                               "final_train_loss": round(float(np.mean(train[-5:])), 4) if train else None,
                               "lora": sc.lora}
    val = {k: (round(state["val"][k], 4) if k in state["val"] else None)
           for k in ("untrained", "after_stage1", "after_stage2")}
    return {"val_loss": val, "stages": stages, "examples": data.counts,
            "spaces": [asdict(s) for s in data.spaces], "device": str(acc.device),
            "num_processes": acc.num_processes, "mixed_precision": acc.mixed_precision,
            "warm_start": state.get("warm_start")}


def write_curves(rows: list[dict], work_dir: Path, val_loss: dict) -> None:
    """curves.parquet and curves.png: train and validation loss per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.DataFrame(rows, columns=["stage", "step", "split", "loss", "lr", "tokens_per_s"])
    df.to_parquet(work_dir / CURVES_FILE, index=False)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, n in zip(axes, (1, 2)):
        s = df[df["stage"] == n]
        tr, va = s[s["split"] == "train"], s[s["split"] == "val"]
        if n == 2 and val_loss.get("after_stage1") is not None:  # stage 2 starts where stage 1 ended
            va = pd.concat([pd.DataFrame([{"step": 0, "loss": val_loss["after_stage1"]}]), va])
        ax.plot(tr["step"], tr["loss"], lw=1, alpha=0.5, label="train")
        if len(tr) >= 5:
            ax.plot(tr["step"], tr["loss"].rolling(5, min_periods=1).mean(), lw=2, label="train (mean of 5)")
        ax.plot(va["step"], va["loss"], "o-", label="validation (held-out)")
        ax.set_title(f"stage {n}: {'adapters only' if n == 1 else 'full / LoRA'}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("cross-entropy per target token")
    axes[0].legend()
    v = {k: ("-" if x is None else f"{x:.3f}") for k, x in val_loss.items()}
    fig.suptitle(f"validation loss: untrained {v['untrained']}, after stage 1 {v['after_stage1']}, "
                 f"after stage 2 {v['after_stage2']}")
    fig.tight_layout()
    fig.savefig(work_dir / CURVES_PNG, dpi=100)
    plt.close(fig)
