"""Two-stage ELM training (PAPER.md "Training"), run under ``accelerate launch``, and the ``train`` stage.

    stage 1   adapters only, LM frozen (gradients still flow through it to the slots), lr ~3e-3
    stage 2   everything (or LoRA on the LM + adapters), a new optimizer and schedule, lr ~5e-5

Sections, top to bottom:

    configs       StageConfig, TrainConfig: frozen, validated, JSON round trip
    data          synthesize rows -> Examples (vectors per slot); deterministic batches from (seed, stage, step)
    checkpoints   atomic folders: trainable weights (safetensors), optimizer/scheduler, RNG, state.json
    fit           the loop itself (what elm/train/script.py runs in every process)
    the stage     train(): ArtifactStore.produce(...) whose build runs ``accelerate launch`` as a subprocess

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
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from elm.model.adapter import AdapterConfig
from elm.model.base_lm import DEFAULT_BASE_MODEL
from elm.model.batch import IGNORE_INDEX, Example
from elm.model.elm import DEFAULT_SYSTEM_PROMPT, ELMConfig, SpaceSpec
from elm.synth.catalog import get_task

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from elm.artifacts import Artifact, ArtifactStore
    from elm.model.elm import ELM

log = logging.getLogger(__name__)

STAGE = "train"
CODE_VERSION = "1"
MOVIE_SPACES = ("semantic", "behavioral")
USER_SPACE = "behavioral_users"
MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
REPO = Path(__file__).resolve().parents[1]
ACCELERATE_CONFIGS = REPO / "configs" / "accelerate"

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
PUBLISHABLE = {".safetensors", ".json", ".parquet", ".png", ".jinja", ".txt"}
"""File types a train artifact may hold: no pickles (optimizer state stays in the deleted checkpoints)."""


class TrainingError(RuntimeError):
    """Training cannot start, continue or publish; the message says why and what to do."""


class CheckpointError(TrainingError):
    """A checkpoint that is partial, corrupt or from another config."""


# -----------------------------------------------------------------------------
# configs

_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class StageConfig:
    """One training stage: how long, how fast, and (stage 2 only) whether the LM is tuned with LoRA."""

    steps: int
    """Optimizer steps; 0 skips the stage."""
    lr: float
    """Peak learning rate (AdamW), reached after warmup, then cosine decay to lr * min_lr_ratio."""
    batch_size: int = 8
    """Examples per process per micro-batch (the global batch is batch_size x processes x grad_accum)."""
    warmup_steps: int = 0
    """Linear warmup steps at the start of the stage."""
    min_lr_ratio: float = 0.1
    """Where the cosine decay ends, as a fraction of lr."""
    weight_decay: float = 0.0
    """AdamW weight decay on matrices (biases and norms never decay)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    max_grad_norm: float | None = 1.0
    """Gradient clipping; None turns it off."""
    lora: bool = False
    """Stage 2: train LoRA matrices on the LM (merged into it before saving) instead of every LM weight."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scale numerator (the update is scaled by lora_alpha / lora_r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input."""
    target_modules: tuple[str, ...] = _LORA_TARGETS
    """LM module names LoRA wraps (Llama/Qwen names by default)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        checks = {
            "steps": _is_int(self.steps) and self.steps >= 0,
            "lr": _is_num(self.lr) and 0 < self.lr < 1,
            "batch_size": _is_int(self.batch_size) and self.batch_size >= 1,
            "warmup_steps": _is_int(self.warmup_steps) and self.warmup_steps >= 0,
            "min_lr_ratio": _is_num(self.min_lr_ratio) and 0 <= self.min_lr_ratio <= 1,
            "weight_decay": _is_num(self.weight_decay) and self.weight_decay >= 0,
            "grad_accum": _is_int(self.grad_accum) and self.grad_accum >= 1,
            "max_grad_norm": self.max_grad_norm is None or (_is_num(self.max_grad_norm) and self.max_grad_norm > 0),
            "lora": isinstance(self.lora, bool),
            "lora_r": _is_int(self.lora_r) and self.lora_r >= 1,
            "lora_alpha": _is_num(self.lora_alpha) and self.lora_alpha > 0,
            "lora_dropout": _is_num(self.lora_dropout) and 0 <= self.lora_dropout < 1,
            "target_modules": bool(self.target_modules) and all(isinstance(m, str) and m for m in self.target_modules),
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"StageConfig.{name}={getattr(self, name)!r} is invalid")

    @classmethod
    def from_dict(cls, d: dict) -> StageConfig:
        return cls(**_known(cls, d))


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _known(cls, d: dict) -> dict:
    known = {f.name for f in fields(cls)}
    if unknown := sorted(set(d) - known):
        raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(known)}")
    return dict(d)


DEFAULT_ADAPTER = {"depth": 2, "activation": "gelu", "soft_tokens": 4, "input_norm": "layernorm"}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained ELM; saved as train_config.json next to it."""

    movie_space: str = "semantic"
    """Which vectors movie slots read: "semantic" or "behavioral" (user slots always read behavioral users)."""
    base_model: str = DEFAULT_BASE_MODEL
    """Base causal LM: a name, folder or hub id (elm.model.base_lm.resolve_model_path)."""
    adapter: dict = field(default_factory=lambda: dict(DEFAULT_ADAPTER))
    """AdapterConfig fields shared by every space's adapter (4 soft tokens per vector mattered most here)."""
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    """System message of every prompt (every token costs training time)."""
    max_length: int = 128
    """Most tokens of prompt + target; longer targets are cut (the end token goes first). 128 keeps 98% of
    the target tokens of the template teacher's ml-latest-small rows (median row: 91 tokens)."""
    stage1: StageConfig = StageConfig(steps=30, lr=3e-3, batch_size=8, warmup_steps=3)
    """Adapters only; a high lr lands the adapter where the LM can read it (ARCHITECTURE.md).
    Step budgets are sized for the embedded default on a 2-core CPU (about 7 minutes in all)."""
    stage2: StageConfig = StageConfig(steps=20, lr=1e-4, batch_size=8, warmup_steps=2)
    """Everything (or LoRA), starting from stage 1's adapters with a new optimizer. With 20 steps from the
    same stage 1, held-out loss ended at 1.97 (lr 5e-5), 1.60 (1e-4) and 1.33 (2e-4): 1e-4 learns fast
    without betting on the most aggressive rate."""
    eval_every: int = 15
    """Validation loss every this many steps of a stage (0: only before training and after each stage)."""
    eval_examples: int = 40
    """Size of the fixed held-out subset (synthesize rows with split "heldout") for validation loss."""
    checkpoint_every: int = 20
    """Checkpoint every this many steps (0: only at the end of each stage)."""
    keep_checkpoints: int = 2
    """Newest checkpoints kept in the work folder while training (all are deleted before publishing)."""
    seed: int = 0
    """Adapter init, batch order, dropout."""
    mixed_precision: str = "auto"
    """"no", "bf16", "fp16", or "auto": what the accelerate config says."""
    accelerate_config: str = "auto"
    """YAML for ``accelerate launch`` (configs/accelerate/*.yaml or any path); "auto": gpu.yaml with CUDA, else cpu.yaml."""

    def __post_init__(self) -> None:
        for name in ("stage1", "stage2"):
            v = getattr(self, name)
            if isinstance(v, dict):
                object.__setattr__(self, name, StageConfig.from_dict(v))
            elif not isinstance(v, StageConfig):
                raise ValueError(f"TrainConfig.{name} must be a StageConfig or a dict, got {type(v).__name__}")
        object.__setattr__(self, "adapter", dict(self.adapter))
        if self.movie_space not in MOVIE_SPACES:
            raise ValueError(f"TrainConfig.movie_space must be one of {list(MOVIE_SPACES)}, got {self.movie_space!r}")
        if not isinstance(self.base_model, str) or not self.base_model:
            raise ValueError(f"TrainConfig.base_model={self.base_model!r} must be a non-empty string")
        allowed = {f.name for f in fields(AdapterConfig)} - {"in_dim", "out_dim"}
        if bad := sorted(set(self.adapter) - allowed):
            raise ValueError(f"TrainConfig.adapter: unknown field(s) {bad}; allowed: {sorted(allowed)}")
        AdapterConfig(in_dim=1, out_dim=1, **self.adapter)  # raises naming the bad value
        if self.system_prompt is not None and not isinstance(self.system_prompt, str):
            raise ValueError("TrainConfig.system_prompt must be a string or None")
        if not _is_int(self.max_length) or self.max_length < 16:
            raise ValueError(f"TrainConfig.max_length={self.max_length!r} must be an int >= 16")
        if self.stage1.lora:
            raise ValueError("TrainConfig.stage1.lora: stage 1 trains the adapters only; LoRA is a stage 2 option")
        for name in ("eval_every", "eval_examples", "checkpoint_every", "seed"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r} must be an int >= 0")
        if not _is_int(self.keep_checkpoints) or self.keep_checkpoints < 1:
            raise ValueError(f"TrainConfig.keep_checkpoints={self.keep_checkpoints!r} must be an int >= 1")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"TrainConfig.mixed_precision must be one of {list(MIXED_PRECISION)}, "
                             f"got {self.mixed_precision!r}")
        if not isinstance(self.accelerate_config, str) or not self.accelerate_config:
            raise ValueError("TrainConfig.accelerate_config must be 'auto' or the path of a YAML file")

    def stage(self, n: int) -> StageConfig:
        return {1: self.stage1, 2: self.stage2}[n]

    def to_dict(self) -> dict:
        d = asdict(self)
        for name in ("stage1", "stage2"):
            d[name]["target_modules"] = list(d[name]["target_modules"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return cls(**_known(cls, d))

    def save(self, path: Path) -> Path:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read a TrainConfig from {path}: {e}") from e
        return cls.from_dict(d)

    def elm_config(self, spaces: tuple[SpaceSpec, ...]) -> ELMConfig:
        return ELMConfig(spaces=spaces, base_model=self.base_model, adapter=self.adapter,
                         system_prompt=self.system_prompt, max_length=self.max_length)


def accelerate_config_path(name: str) -> Path:
    """The YAML file for a TrainConfig.accelerate_config value ("auto", a name in configs/accelerate, a path)."""
    if name == "auto":
        import torch

        name = "gpu" if torch.cuda.is_available() else "cpu"
    for p in (Path(name).expanduser(), REPO / name, ACCELERATE_CONFIGS / name, ACCELERATE_CONFIGS / f"{name}.yaml"):
        if p.is_file():
            return p.resolve()
    known = ", ".join(sorted(p.stem for p in ACCELERATE_CONFIGS.glob("*.yaml")))
    raise TrainingError(f"accelerate config {name!r} not found (a YAML path, or one of: {known})")


# -----------------------------------------------------------------------------
# data


@dataclass
class TrainData:
    """What the loop reads: the ELM's spaces, training examples, the fixed validation subset."""

    spaces: tuple[SpaceSpec, ...]
    train: list[Example]
    val: list[Example]
    samples: dict[str, np.ndarray]
    """A few vectors per space: the adapter's output scale is calibrated on them."""
    counts: dict


def load_artifact(path: Path) -> Artifact:
    """A published artifact from its folder (artifacts/<stage>/<version>)."""
    from elm.artifacts import ArtifactError, ArtifactStore

    path = Path(path).resolve()
    art = ArtifactStore(path.parent.parent).get(path.parent.name, path.name)
    if art is None:
        raise ArtifactError(f"{path} is not a published artifact folder (no manifest.json)")
    return art


def row_vectors(rows: pd.DataFrame, tables: dict[str, tuple[str, Any]]) -> tuple[list, np.ndarray]:
    """Per row, [(space, vector)] in slot order, and a mask of rows that have every vector.

    The entity fills the first slot of its kind, the partner the next movie slot (m0 = entity_id,
    m1 = partner_id; u0 = the user).
    """
    import pandas as pd

    out, ok = [], np.ones(len(rows), dtype=bool)
    known = {kind: set(v.ids.tolist()) for kind, (_, v) in tables.items()}
    for i, r in enumerate(rows.itertuples(index=False)):
        queue = {"movie": [], "user": []}
        queue[r.kind].append(int(r.entity_id))
        if pd.notna(r.partner_id):
            queue["movie"].append(int(r.partner_id))
        pairs = []
        for kind in get_task(r.task).slots:
            if not queue[kind]:
                raise TrainingError(f"synthesize row {i} (task {r.task}, {r.kind} {r.entity_id}) has no id "
                                    f"for its {kind} slot")
            eid = queue[kind].pop(0)
            if eid not in known[kind]:
                ok[i] = False
                break
            name, vectors = tables[kind]
            pairs.append((name, vectors.get([eid])[0]))
        out.append(pairs)
    return out, ok


def load_data(cfg: TrainConfig, synthesize: Artifact, semantic: Artifact, behavioral: Artifact) -> TrainData:
    """Examples from the synthesize rows (train split) and the fixed validation subset (held-out split).

    Rows whose entity or partner has no vector in the chosen space (a movie without ratings has no
    behavioral vector) are dropped and counted.
    """
    import pandas as pd

    from elm import vectors as vec

    ex = pd.read_parquet(synthesize.file("examples.parquet"),
                         columns=["kind", "entity_id", "partner_id", "task", "split", "elm_prompt", "target"])
    movie_art = semantic if cfg.movie_space == "semantic" else behavioral
    tables = {"movie": (f"{cfg.movie_space}_movies", vec.read(movie_art.file("movies.parquet"))),
              "user": (USER_SPACE, vec.read(behavioral.file("users.parquet")))}
    sources = {"movie": movie_art, "user": behavioral}
    pairs, ok = row_vectors(ex, tables)
    dropped = {s: int((~ok & (ex["split"] == s).to_numpy()).sum()) for s in ("train", "heldout")}
    if (~ok).any():
        log.warning("train: dropped %d of %d rows whose entity has no vector in the %s space (e.g. %s ids %s)",
                    int((~ok).sum()), len(ex), cfg.movie_space, ex.loc[~ok, "kind"].iloc[0],
                    ex.loc[~ok, "entity_id"].head(5).tolist())

    def examples(mask: np.ndarray) -> list[Example]:
        return [Example(r.elm_prompt, pairs[i], r.target, get_task(r.task).slots)
                for i, r in zip(np.flatnonzero(mask), ex[mask].itertuples(index=False))]

    train = examples(ok & (ex["split"] == "train").to_numpy())
    used = {kind for e in train for kind in e.slots}
    # Validation only on slot kinds that training teaches (an adapter that never trained has no loss to report).
    teachable = ex["task"].map(lambda t: set(get_task(t).slots) <= used).to_numpy()
    heldout = ok & teachable & (ex["split"] == "heldout").to_numpy()
    if not train:
        raise TrainingError(f"no training rows left in synthesize {synthesize.version} "
                            f"({dropped['train']} dropped for missing {cfg.movie_space} vectors)")
    if cfg.eval_examples and not heldout.any():
        raise TrainingError(f"synthesize {synthesize.version} has no usable held-out rows for the validation "
                            "loss: synthesize held-out movies/users, or set eval_examples=0")
    # A seeded subset, fixed for the whole run: validation losses of different steps are comparable.
    pick = np.flatnonzero(heldout)
    pick = np.sort(np.random.default_rng([cfg.seed, 7]).permutation(pick)[: cfg.eval_examples])
    val_mask = np.zeros(len(ex), dtype=bool)
    val_mask[pick] = True
    val = examples(val_mask)

    spaces = tuple(SpaceSpec(tables[k][0], k, tables[k][1].dim, f"{sources[k].stage}/{sources[k].version}")
                   for k in ("movie", "user") if k in used)
    samples = {tables[k][0]: tables[k][1].matrix[:256] for k in ("movie", "user") if k in used}
    counts = {"train": len(train), "val": len(val), "heldout_available": int(heldout.sum()), "dropped": dropped}
    log.info("train: %d training examples, %d validation examples (of %d held-out), spaces %s",
             len(train), len(val), int(heldout.sum()), ", ".join(s.name for s in spaces))
    return TrainData(spaces, train, val, samples, counts)


def batch_indices(n: int, batch_size: int, seed: int, stage: int, micro_step: int,
                  rank: int = 0, world: int = 1) -> np.ndarray:
    """Rows of one micro-step for one process: epochs are seeded permutations read in order.

    A pure function of its arguments, so the data position is part of the step and resume is exact.
    """
    size = batch_size * world
    pos = np.arange(micro_step * size, (micro_step + 1) * size)
    epoch = pos // n
    out = np.empty(size, dtype=np.int64)
    for e in np.unique(epoch):
        perm = np.random.default_rng([seed, stage, int(e)]).permutation(n)
        out[epoch == e] = perm[pos[epoch == e] % n]
    return out[rank::world]


def lr_factor(sc: StageConfig, step: int) -> float:
    """Linear warmup, then cosine decay to min_lr_ratio at the last step."""
    if step < sc.warmup_steps:
        return (step + 1) / sc.warmup_steps
    progress = (step - sc.warmup_steps) / max(1, sc.steps - sc.warmup_steps)
    return sc.min_lr_ratio + (1 - sc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# -----------------------------------------------------------------------------
# checkpoints


def checkpoint_name(stage: int, step: int) -> str:
    return f"stage{stage}-step{step:06d}"


def list_checkpoints(root: Path) -> list[Path]:
    """Checkpoint folders, oldest first (in-progress ``.tmp-*`` folders are not checkpoints)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("stage") and "-step" in p.name]
    return sorted(found, key=lambda p: (int(p.name[5:p.name.index("-")]), int(p.name.split("-step")[1])))


def read_checkpoint(path: Path) -> dict:
    """state.json of a checkpoint after checking every file against its sha256; CheckpointError otherwise."""
    from elm.artifacts import sha256_file

    hint = (f"delete it (rm -r {path}) to resume from the checkpoint before it, or delete {path.parent} "
            "to start over")
    try:
        state = json.loads((path / "state.json").read_text())
        files = state["files"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path} is partial or corrupt (state.json: {e}); {hint}") from None
    for name, digest in files.items():
        p = path / name
        if not p.is_file():
            raise CheckpointError(f"checkpoint {path} is partial: {name} is missing; {hint}")
        if sha256_file(p) != digest:
            raise CheckpointError(f"checkpoint {path} is corrupt: {name} does not match its sha256; {hint}")
    return state


def trainable_state(elm: ELM) -> dict[str, torch.Tensor]:
    return {n: p.detach().to("cpu").contiguous() for n, p in elm.named_parameters() if p.requires_grad}


def save_checkpoint(root: Path, state: dict, elm: ELM, optimizer, scheduler, accelerator, keep: int) -> None:
    """Write a checkpoint atomically (temp folder, then rename) and keep the newest ``keep``."""
    import torch
    from safetensors.torch import save_file

    from elm.artifacts import sha256_file

    name = checkpoint_name(state["stage"], state["step"])
    tmp = root / f".tmp-{name}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    # Every process has its own RNG stream (dropout differs per shard).
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    torch.save(rng, tmp / f"rng_{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_file(trainable_state(elm), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        opt = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
        if accelerator.scaler is not None:
            opt["scaler"] = accelerator.scaler.state_dict()
        torch.save(opt, tmp / "optimizer.pt")
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        (tmp / "state.json").write_text(json.dumps({**state, "files": files}, indent=1))
        for p in tmp.iterdir():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def load_checkpoint(path: Path, elm: ELM, optimizer, scheduler, accelerator) -> None:
    """Restore weights, optimizer, scheduler and this process's RNG from a checked checkpoint."""
    import torch
    from safetensors.torch import load_file

    weights = load_file(str(path / "model.safetensors"))
    params = dict(elm.named_parameters())
    expected = {n for n, p in params.items() if p.requires_grad}
    if set(weights) != expected:
        missing, extra = sorted(expected - set(weights)), sorted(set(weights) - expected)
        raise CheckpointError(f"checkpoint {path} does not fit this model (another config?): "
                              f"missing {missing[:3]}, unexpected {extra[:3]}")
    with torch.no_grad():
        for n, t in weights.items():
            params[n].copy_(t)
    opt = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(opt["optimizer"])
    scheduler.load_state_dict(opt["scheduler"])
    if accelerator.scaler is not None and "scaler" in opt:
        accelerator.scaler.load_state_dict(opt["scaler"])
    rng_file = path / f"rng_{accelerator.process_index}.pt"
    if not rng_file.is_file():
        raise CheckpointError(f"checkpoint {path} has no RNG state for process {accelerator.process_index} "
                              "(saved with fewer processes?)")
    rng = torch.load(rng_file, weights_only=True)
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])


# -----------------------------------------------------------------------------
# fit


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
            loss = model(**_to_device(batch, accelerator.device)).loss
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


def _optimizer(elm: ELM, sc: StageConfig):
    import torch

    params = [p for p in elm.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": sc.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
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
    elm.train()
    collate = elm.collator()
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
        opt, sched = _optimizer(elm, sc)  # new each stage: no optimizer state leaks from stage 1 into stage 2
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
                                    acc.process_index, acc.num_processes)
                batch = _to_device(collate([data.train[i] for i in idx]), acc.device)
                last = a == sc.grad_accum - 1
                with contextlib.nullcontext() if last else acc.no_sync(model):
                    loss = model(**batch).loss
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
            "num_processes": acc.num_processes, "mixed_precision": acc.mixed_precision}


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


# -----------------------------------------------------------------------------
# the stage


def launch_command(cfg: TrainConfig, work_dir: Path, arts: dict[str, Artifact], store: ArtifactStore,
                   resume: bool) -> list[str]:
    """``accelerate launch`` of elm.train.script, with the interpreter that runs us."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch",
           "--config_file", str(accelerate_config_path(cfg.accelerate_config)),
           "-m", "elm.train.script", "--work-dir", str(work_dir), "--config", str(work_dir / CONFIG_FILE),
           "--artifacts", str(store.root)]
    for k in ("synthesize", "semantic", "behavioral"):
        cmd += [f"--{k}", str(arts[k].path)]
    return cmd + (["--resume"] if resume else [])


def run_logged(cmd: list[str], env: dict | None = None, tail: int = 40) -> None:
    """Run cmd, streaming its output line by line to this module's logger; TrainingError with the tail on failure."""
    lines: collections.deque[str] = collections.deque(maxlen=tail)
    # Passive OpenMP waits: on a CPU shared with other work, spinning threads slowed steps 5x here.
    defaults = {"OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    full_env = {**defaults, **os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    log.info("launching: %s", " ".join(cmd))
    # Own process group: if we are interrupted, the launcher and its workers go down with us.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            env=full_env, start_new_session=True)
    try:
        for line in proc.stdout:  # text mode: tqdm's \r redraws arrive as separate lines
            line = line.rstrip()
            if line:
                lines.append(line)
                log.info("%s", line)
        rc = proc.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        raise
    if rc != 0:
        raise TrainingError(f"training exited with status {rc}; last {len(lines)} lines of its output:\n"
                            + "\n".join(lines))


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
    named = synth.manifest.get("inputs", {})
    full = {"synthesize": synth}
    home = type(store)(synth.path.parent.parent)  # the versions synthesize names live where it was published
    for k in ("semantic", "behavioral"):
        full[k] = arts.get(k) or home.resolve(k, named.get(k))
        if named.get(k) and full[k].version != named[k]:
            raise TrainingError(f"synthesize {synth.version} was made from {k} {named[k]}, not "
                                f"{full[k].version}: its splits and partners belong to those vectors")

    def build(work) -> None:
        if (work.path / SUMMARY_FILE).exists() and not list_checkpoints(work.path / CHECKPOINTS):
            log.info("train: %s already holds a finished run; publishing it", work.path)
        else:
            resolve_model_path(cfg.base_model, store)  # converts the packaged default once, before the launch
            cfg.save(work.path / CONFIG_FILE)
            resume = bool(list_checkpoints(work.path / CHECKPOINTS))
            if resume:
                log.info("train: resuming from the checkpoints in %s", work.path / CHECKPOINTS)
            run_logged(launch_command(cfg, work.path, full, store, resume), env)
        # Checkpoints hold pickled optimizer state and full weights: never part of the artifact.
        shutil.rmtree(work.path / CHECKPOINTS, ignore_errors=True)
        check_publishable(work.path)
        work.summary.update(json.loads((work.path / SUMMARY_FILE).read_text()))

    inputs = {k: a.version for k, a in full.items()}
    return store.produce(STAGE, inputs=inputs, config=cfg.to_dict(), code_version=CODE_VERSION, build=build,
                         resumable=True)


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
