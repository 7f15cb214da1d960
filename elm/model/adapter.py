"""The adapter E_A: one domain vector in, ``soft_tokens`` vectors in the LLM's token-embedding space out.

    cfg = AdapterConfig.from_string("mlp2x_gelu", in_dim=384, out_dim=576)   # LLaVA-style names
    adapter = build_adapter(cfg, target_rms=0.136)                           # the LLM's embedding RMS
    adapter(x)                                                               # [n, 384] -> [n, 4, 576]

An MLP (``depth`` Linear layers, ``activation`` between them) after an input normalisation. The last
layer emits ``soft_tokens * out_dim`` numbers, reshaped so that each vector fills several LLM input
positions: a 135M LLM reads four positions of a movie far more easily than one (docs/METHOD.md, "Idea").

Scale matters at initialisation: the LLM has only ever seen inputs at its own embedding scale, and an
adapter whose outputs start 10x too big or small spends most of stage 1 just rescaling. So
``build_adapter`` calibrates the last layer on a sample so the outputs start at ``target_rms``.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from elm.configs import known_fields

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}
INPUT_NORMS = ("layernorm", "l2", "none")
_SPEC = re.compile(r"^(?:linear|mlp(\d+)x_([a-z]+))$")
CALIBRATION_SEED = 0
CALIBRATION_SIZE = 256


@dataclass(frozen=True)
class AdapterConfig:
    """Shape and behaviour of one adapter; JSON-serialisable with to_dict / from_dict."""

    in_dim: int
    """Size of the domain vectors this adapter reads (e.g. 384 for MiniLM, the WALS factor count)."""
    out_dim: int
    """The LLM's hidden size: each soft token is one input embedding of the LLM."""
    depth: int = 2
    """Number of Linear layers; 1 is a plain linear map (LLaVA v1), 2 the MLP of LLaVA-1.5."""
    width: int | None = None
    """Hidden width between Linear layers; None means out_dim. Ignored when depth is 1."""
    activation: str = "gelu"
    """Nonlinearity between Linear layers, one of ACTIVATIONS."""
    input_norm: str = "layernorm"
    """How inputs are normalised first: "layernorm" (non-affine, per vector), "l2" (unit direction,
    scaled by sqrt(in_dim) so elements have unit RMS) or "none". WALS vectors have wildly varying norms;
    semantic ones are already unit length."""
    soft_tokens: int = 4
    """LLM input positions per vector: the output is reshaped to [n, soft_tokens, out_dim]."""
    dropout: float = 0.0
    """Dropout after each hidden activation (training only)."""

    def __post_init__(self) -> None:
        checks = {
            "in_dim": isinstance(self.in_dim, int) and self.in_dim >= 1,
            "out_dim": isinstance(self.out_dim, int) and self.out_dim >= 1,
            "depth": isinstance(self.depth, int) and self.depth >= 1,
            "width": self.width is None or (isinstance(self.width, int) and self.width >= 1),
            "activation": self.activation in ACTIVATIONS,
            "input_norm": self.input_norm in INPUT_NORMS,
            "soft_tokens": isinstance(self.soft_tokens, int) and 1 <= self.soft_tokens <= 64,
            "dropout": isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0,
        }
        allowed = {"activation": f" (one of {', '.join(ACTIVATIONS)})",
                   "input_norm": f" (one of {', '.join(INPUT_NORMS)})",
                   "soft_tokens": " (an int in [1, 64])", "dropout": " (a float in [0, 1))"}
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"AdapterConfig.{name}={getattr(self, name)!r} is invalid{allowed.get(name, '')}")

    @property
    def hidden(self) -> int:
        return self.width or self.out_dim

    @classmethod
    def from_string(cls, spec: str, *, in_dim: int, out_dim: int, **overrides) -> AdapterConfig:
        """LLaVA's projector names: "linear" (depth 1) or "mlp{depth}x_{activation}", e.g. "mlp2x_gelu"."""
        m = _SPEC.match(spec) if isinstance(spec, str) else None
        if m is None:
            raise ValueError(f"adapter spec {spec!r} is not 'linear' or 'mlp<depth>x_<activation>' "
                             f"(e.g. 'mlp2x_gelu'; activations: {', '.join(ACTIVATIONS)})")
        if m.group(1) is not None:
            overrides = {"depth": int(m.group(1)), "activation": m.group(2), **overrides}
        else:
            overrides = {"depth": 1, **overrides}
        return cls(in_dim=in_dim, out_dim=out_dim, **overrides)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AdapterConfig:
        return cls(**known_fields(cls, d))


class Adapter(nn.Module):
    """x [n, in_dim] -> [n, soft_tokens, out_dim]."""

    def __init__(self, cfg: AdapterConfig):
        super().__init__()
        self.cfg = cfg
        dims = [cfg.in_dim] + [cfg.hidden] * (cfg.depth - 1) + [cfg.soft_tokens * cfg.out_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            linear = nn.Linear(a, b)
            # Unit-variance fan-in init keeps hidden activations O(1) for unit-RMS inputs, so the
            # nonlinearity is actually used (PyTorch's default is ~1.7x smaller per layer).
            nn.init.normal_(linear.weight, std=1.0 / math.sqrt(a))
            nn.init.zeros_(linear.bias)
            layers.append(linear)
            if i < cfg.depth - 1:
                layers.append(ACTIVATIONS[cfg.activation]())
                if cfg.dropout > 0:
                    layers.append(nn.Dropout(cfg.dropout))
        self.mlp = nn.Sequential(*layers)

    @property
    def last(self) -> nn.Linear:
        return self.mlp[-1]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.input_norm == "layernorm":
            return F.layer_norm(x, (x.shape[-1],))
        if self.cfg.input_norm == "l2":
            return F.normalize(x, dim=-1) * math.sqrt(x.shape[-1])
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[-1] != self.cfg.in_dim:
            raise ValueError(f"adapter expects vectors of shape [n, {self.cfg.in_dim}], got {list(x.shape)}")
        x = x.to(self.last.weight.dtype)
        return self.mlp(self.normalize(x)).view(x.shape[0], self.cfg.soft_tokens, self.cfg.out_dim)

    def calibration_sample(self) -> torch.Tensor:
        """Stand-in inputs for match_scale when no real vectors are at hand (seeded: builds are reproducible)."""
        g = torch.Generator().manual_seed(CALIBRATION_SEED)
        return torch.randn(CALIBRATION_SIZE, self.cfg.in_dim, generator=g)

    @torch.no_grad()
    def match_scale(self, target_rms: float, sample: torch.Tensor | None = None) -> float:
        """Rescale the last layer so outputs on ``sample`` have RMS ``target_rms``; returns the factor.

        With input_norm "none" pass real vectors as ``sample``: only they know the input scale.
        """
        if not (isinstance(target_rms, (int, float)) and math.isfinite(target_rms) and target_rms > 0):
            raise ValueError(f"target_rms must be a positive finite number, got {target_rms!r}")
        x = self.calibration_sample() if sample is None else torch.as_tensor(sample, dtype=torch.float32)
        was_training = self.training
        self.eval()
        try:
            rms = self(x.to(self.last.weight.device)).pow(2).mean().sqrt().item()
        finally:
            self.train(was_training)
        if not math.isfinite(rms) or rms == 0:
            raise ValueError(f"cannot match scale: adapter outputs on the sample have RMS {rms}")
        factor = target_rms / rms
        self.last.weight.mul_(factor)
        self.last.bias.mul_(factor)
        return factor


def embedding_rms(weight: torch.Tensor) -> float:
    """RMS of an LLM's token input embeddings: the scale adapter outputs should start at."""
    return weight.detach().float().pow(2).mean().sqrt().item()


def build_adapter(cfg: AdapterConfig, target_rms: float | None = None,
                  sample: torch.Tensor | None = None) -> Adapter:
    """A fresh adapter; with target_rms, its outputs start at that RMS (on ``sample`` or stand-in inputs)."""
    adapter = Adapter(cfg)
    if target_rms is not None:
        adapter.match_scale(target_rms, sample)
    return adapter
