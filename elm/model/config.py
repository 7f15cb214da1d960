"""What an ELM is made of: the embedding spaces it reads (one adapter each) and its base LM.

Saved as JSON next to the weights (elm_config.json); ``from_dict`` refuses fields it does not know.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields

from elm import vectors as vec
from elm.configs import known_fields
from elm.model.adapter import AdapterConfig
from elm.model.base_lm import DEFAULT_BASE_MODEL

DEFAULT_SYSTEM_PROMPT = "You read embedding vectors and describe what they represent."
_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


@dataclass(frozen=True)
class SpaceSpec:
    """One embedding space the ELM reads, with its own adapter."""

    name: str
    """snake_case id, e.g. "semantic_movies", "behavioral_movies", "behavioral_users"."""
    kind: str
    """Which slots it fills: "movie" or "user" (elm.vectors.KINDS)."""
    dim: int
    """Vector size."""
    source: str = ""
    """Free text provenance, e.g. the artifact "semantic/3f2a..." the vectors came from."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"SpaceSpec.name={self.name!r} must be snake_case (lowercase, digits, underscores)")
        if self.kind not in vec.KINDS:
            raise ValueError(f"SpaceSpec {self.name!r}: kind={self.kind!r} is not one of {list(vec.KINDS)}")
        if not isinstance(self.dim, int) or self.dim < 1:
            raise ValueError(f"SpaceSpec {self.name!r}: dim={self.dim!r} must be a positive int")
        if not isinstance(self.source, str):
            raise ValueError(f"SpaceSpec {self.name!r}: source must be a string")


_ADAPTER_TEMPLATE_FIELDS = {f.name for f in fields(AdapterConfig)} - {"in_dim", "out_dim"}


@dataclass(frozen=True)
class ELMConfig:
    """What an ELM is made of; saved as JSON next to its weights."""

    spaces: tuple[SpaceSpec, ...]
    """The embedding spaces it reads, one adapter each (dicts are accepted and converted)."""
    base_model: str = DEFAULT_BASE_MODEL
    """Base causal LM: a name, folder or hub id as accepted by elm.model.base_lm.resolve_model_path."""
    adapter: dict = field(default_factory=dict)
    """AdapterConfig fields shared by every space's adapter, except in_dim/out_dim (set per space / by the LM)."""
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    """System message of every prompt; short because every token costs training time. None leaves it to
    the chat template (SmolLM2's then adds its own, longer one)."""
    max_length: int = 512
    """Most tokens of prompt (slots included) + target; longer targets are cut, longer prompts rejected."""
    end_token: str | None = None
    """Token that ends an answer (appended to targets, stops generation); None: the tokenizer's eos."""

    def __post_init__(self) -> None:
        spaces = tuple(s if isinstance(s, SpaceSpec) else SpaceSpec(**s) for s in self.spaces)
        object.__setattr__(self, "spaces", spaces)
        object.__setattr__(self, "adapter", dict(self.adapter))  # a private copy: the config is frozen
        if not spaces:
            raise ValueError("ELMConfig.spaces is empty: an ELM reads at least one embedding space")
        names = [s.name for s in spaces]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"ELMConfig.spaces: duplicate space name(s) {dupes}")
        if bad := sorted(set(self.adapter) - _ADAPTER_TEMPLATE_FIELDS):
            raise ValueError(f"ELMConfig.adapter: unknown or per-space field(s) {bad}; "
                             f"allowed: {sorted(_ADAPTER_TEMPLATE_FIELDS)}")
        AdapterConfig(in_dim=1, out_dim=1, **self.adapter)  # validates the template's values
        if not isinstance(self.base_model, str) or not self.base_model:
            raise ValueError(f"ELMConfig.base_model={self.base_model!r} must be a non-empty string")
        if self.system_prompt is not None and not isinstance(self.system_prompt, str):
            raise ValueError("ELMConfig.system_prompt must be a string or None")
        if not isinstance(self.max_length, int) or self.max_length < 8:
            raise ValueError(f"ELMConfig.max_length={self.max_length!r} must be an int >= 8")

    def adapter_config(self, space: SpaceSpec, out_dim: int) -> AdapterConfig:
        return AdapterConfig(in_dim=space.dim, out_dim=out_dim, **self.adapter)

    @property
    def soft_tokens(self) -> int:
        return self.adapter_config(self.spaces[0], 1).soft_tokens

    def space(self, name: str) -> SpaceSpec:
        for s in self.spaces:
            if s.name == name:
                return s
        raise KeyError(f"unknown embedding space {name!r}; known: {', '.join(s.name for s in self.spaces)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["spaces"] = [asdict(s) for s in self.spaces]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ELMConfig:
        return cls(**known_fields(cls, d))
