"""Training configuration: StageConfig and TrainConfig (frozen, validated, JSON round trip), the errors
training raises, and where ``accelerate launch`` finds its YAML (configs/accelerate/)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from elm.configs import known_fields as _known
from elm.embed.spaces import stages_of
from elm.model.adapter import AdapterConfig
from elm.model.base_lm import DEFAULT_BASE_MODEL
from elm.model.config import DEFAULT_SYSTEM_PROMPT, ELMConfig, SpaceSpec

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
REPO = Path(__file__).resolve().parents[2]
ACCELERATE_CONFIGS = REPO / "configs" / "accelerate"


class TrainingError(RuntimeError):
    """Training cannot start, continue or publish; the message says why and what to do."""


class CheckpointError(TrainingError):
    """A checkpoint that is partial, corrupt or from another config."""


_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class StageConfig:
    """One training stage: how long, how fast, and (stage 2 only) whether the LM is tuned with LoRA."""

    steps: int
    """Optimizer steps; 0 skips the stage."""
    lr: float
    """Peak learning rate (AdamW), reached after warmup, then cosine decay to lr * min_lr_ratio."""
    adapter_lr: float | None = None
    """Peak learning rate of the adapters that start random (same schedule); None: lr. In stage 2 such an
    adapter needs a far higher rate than the LM: at the LM's 1e-4 it barely moves, and the text stops following
    the vector. A warm-started adapter trains at ``lr``: at 1e-3 the movie adapter drifted off its captions
    within 50 steps (held-out soft tokens nearest to their caption's tokens: 0.86 before stage 2, 0.48 after;
    the decade's digit 0.93 -> 0.39), and the summaries' decades went with it."""
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
            "adapter_lr": self.adapter_lr is None or (_is_num(self.adapter_lr) and 0 < self.adapter_lr < 1),
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


DEFAULT_ADAPTER = {"depth": 2, "activation": "gelu", "soft_tokens": 8, "input_norm": "layernorm"}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained ELM; saved as train_config.json next to it."""

    movie_space: str = "semantic"
    """Which vectors movie slots read: "semantic" or "behavioral" (user slots always read behavioral users)."""
    base_model: str = DEFAULT_BASE_MODEL
    """Base causal LM: a name, folder or hub id (elm.model.base_lm.resolve_model_path)."""
    adapter: dict = field(default_factory=lambda: dict(DEFAULT_ADAPTER))
    """AdapterConfig fields shared by every space's adapter (8 soft tokens: a caption of the warm start,
    " 1994 comedy romance", takes 5 for the year and one per genre word)."""
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    """System message of every prompt (every token costs training time)."""
    length_group: int = 16
    """Batches re-cut by length together (elm/train/data.py batch_indices): every 16 batches' rows are
    sorted by length and cut again, so a batch pads little (random batches of 8 pad about 12%). 1: plain
    shuffled batches."""
    max_length: int = 128
    """Most tokens of prompt + target; longer targets are cut (the end token goes first). 128 keeps 98% of
    the target tokens of the template teacher's ml-latest-small rows (median row: 91 tokens)."""
    stage1: StageConfig = StageConfig(steps=0, lr=3e-3, batch_size=8, warmup_steps=0)
    """Adapters only, the LM frozen. 0 steps by default: the warm start (below) already lands the movie adapter
    where the LM can read it, and gradient steps on the frozen LM then mostly teach the targets' shared form
    (docs/METHOD.md, "Training")."""
    stage2: StageConfig = StageConfig(steps=50, lr=1e-4, adapter_lr=1e-3, batch_size=8, warmup_steps=3)
    """Everything (or LoRA) with a new optimizer: warm-started adapters at the LM's rate, adapters that start
    random (warm_start=false) at 10x it, or they barely move. Step budgets are sized for the embedded default
    on a 2-core CPU (stage 2: about 3 minutes on a quiet machine)."""
    warm_start: bool = True
    """Before stage 1, fit the movie adapter in closed form to captions of every training movie's facts, and
    the user adapter to captions of the films the CF model scores highest for every training user
    (elm/train/warm_start.py): the adapters then start where the LM can read them."""
    warm_start_ridge: float = 1.0
    """Ridge penalty of that fit."""
    warm_start_epochs: int = 20
    """Epochs of gradient descent on the whole adapter toward the captions before that fit, so its hidden layer
    is learned rather than random (about 45 s for ml-latest-small's 8,773 training movies on 2 cores). Held-out
    summaries then state genres with F1 0.70 instead of 0.59 (24 movies; docs/METHOD.md, "Training"). 0: random
    hidden layer, one linear solve."""
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
    """"no", "bf16", "fp16", or "auto": what the accelerate config says (cpu.yaml: no; on this project's
    AVX512-BF16 CPU, bf16 autocast trains ~1.7x slower than float32, while bf16 generation is faster)."""
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
        if self.movie_space not in stages_of("movie"):
            raise ValueError(f"TrainConfig.movie_space must be one of {list(stages_of('movie'))}, "
                             f"got {self.movie_space!r}")
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
        if not _is_int(self.length_group) or self.length_group < 1:
            raise ValueError(f"TrainConfig.length_group={self.length_group!r} must be an int >= 1")
        for name in ("eval_every", "eval_examples", "checkpoint_every", "seed"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r} must be an int >= 0")
        if not isinstance(self.warm_start, bool):
            raise ValueError(f"TrainConfig.warm_start={self.warm_start!r} must be true or false")
        if not isinstance(self.warm_start_ridge, (int, float)) or not self.warm_start_ridge > 0:
            raise ValueError(f"TrainConfig.warm_start_ridge={self.warm_start_ridge!r} must be a number > 0")
        if not _is_int(self.warm_start_epochs) or self.warm_start_epochs < 0:
            raise ValueError(f"TrainConfig.warm_start_epochs={self.warm_start_epochs!r} must be an int >= 0")
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
