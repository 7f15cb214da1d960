"""What the synthesize stage is asked to do: which teacher, which tasks, how many entities of each split.

Only the settings that change the text are part of the artifact version (``version_config``); speed
knobs (batch size, concurrency, chunk size) are not, so changing them reuses finished work.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from elm.embed.spaces import stages_of
from elm.synth.catalog import Task, select_tasks
from elm.synth.teachers import BACKENDS
from elm.synth.teachers.local import LocalTeacherConfig
from elm.synth.teachers.openai import OpenAITeacherConfig

# Settings that change speed, not text: kept out of the artifact version.
_SPEED_ONLY = {"batch_size", "threads", "max_concurrency", "timeout_s", "max_retries", "backoff_s", "api_key_env"}


class SynthesisError(RuntimeError):
    """The stage cannot publish: no usable targets, or inputs that do not fit together."""


@dataclass(frozen=True)
class SynthesisConfig:
    teacher: str = "template"
    """Who writes targets: "template" (metadata only), "local" (a transformers LM here), "openai" (a chat endpoint).
    The embedded default is template: within the make run budget, SmolLM2-135M as teacher writes a few hundred
    targets that invent facts and name the title, and the ELM trained on them reads vectors worse (the issue note
    has the numbers). With a capable teacher (local GPU model, or openai -> vLLM), use that."""
    tasks: tuple[str, ...] = ("all",)
    """Task names from elm/synth/catalog.py, or ("all",)."""
    train_movies: int | None = None
    """Training-split movies to write targets for (None: all eligible). The template teacher writes thousands
    a second, and more distinct movies teach the ELM more about its vectors than more tasks per movie."""
    heldout_movies: int | None = 60
    """Held-out movies, each with every selected movie task (the ground-truth reference). Evaluation draws
    its movies per task from these, so more of them means more independent movies behind every number."""
    train_users: int | None = None
    """Training-split users for the user tasks (None: all; 548 on ml-latest-small). With 40, the user adapter,
    which starts random, saw about 8 profiles in the whole of stage 2."""
    heldout_users: int | None = 30
    """Held-out users for the user tasks."""
    tasks_per_movie: int | None = 1
    """Movie tasks sampled per training movie (None: every selected task)."""
    min_movie_ratings: int = 10
    """Movies with fewer ratings are not sampled: their behavioral vectors are mostly noise."""
    max_new_tokens: int | None = 48
    """Caps every task's max_target_tokens (shorter targets generate and train faster; the first sentences,
    which state era and genres, are kept)."""
    partner_space: str = "semantic"
    """Space whose nearest neighbour is the partner of "nearest" two-movie tasks: semantic or behavioral."""
    seed: int = 0
    """Entity sampling, task sampling, random partners, teacher sampling."""
    chunk_size: int = 64
    """Rows generated between two checkpoints of the resumable work."""
    local: LocalTeacherConfig = field(default_factory=LocalTeacherConfig)
    """Settings of the local teacher (used when teacher == "local")."""
    openai: OpenAITeacherConfig | None = None
    """Endpoint of the openai teacher (required when teacher == "openai")."""

    def __post_init__(self) -> None:
        if self.teacher not in BACKENDS:
            raise ValueError(f"SynthesisConfig.teacher must be one of {list(BACKENDS)}, got {self.teacher!r}")
        if BACKENDS[self.teacher].needs_settings and self.settings() is None:
            raise ValueError(f"SynthesisConfig.teacher={self.teacher!r} needs SynthesisConfig.{self.teacher} "
                             "(its settings: for openai, base_url and model)")
        if isinstance(self.tasks, str):
            raise ValueError(f"SynthesisConfig.tasks must be a tuple of names, got the string {self.tasks!r}")
        select_tasks(list(self.tasks))  # raises UnknownTaskError listing the known names
        for name in ("train_movies", "heldout_movies", "train_users", "heldout_users", "tasks_per_movie",
                     "max_new_tokens"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 0):
                raise ValueError(f"SynthesisConfig.{name} must be None or an int >= 0, got {v!r}")
        if self.tasks_per_movie == 0:
            raise ValueError("SynthesisConfig.tasks_per_movie must be >= 1 (or None for every task)")
        if self.max_new_tokens is not None and self.max_new_tokens < 8:
            raise ValueError(f"SynthesisConfig.max_new_tokens must be >= 8, got {self.max_new_tokens}")
        if self.partner_space not in stages_of("movie"):
            raise ValueError(f"SynthesisConfig.partner_space must be one of {list(stages_of('movie'))}, "
                             f"got {self.partner_space!r}")
        if self.chunk_size < 1 or self.min_movie_ratings < 0:
            raise ValueError("SynthesisConfig: chunk_size must be >= 1 and min_movie_ratings >= 0")

    def settings(self):
        """The chosen teacher's settings dataclass: the field named after it (None when it has none)."""
        return getattr(self, self.teacher, None)

    def teacher_settings(self) -> dict:
        """The text-affecting settings of the chosen teacher."""
        sub = self.settings()
        if sub is None:
            return {}
        return {f.name: getattr(sub, f.name) for f in fields(sub) if f.name not in _SPEED_ONLY}

    def version_config(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("local", "openai", "chunk_size")}
        d["tasks"] = [t.name for t in select_tasks(list(self.tasks))]
        d["teacher_settings"] = self.teacher_settings()
        return d


def teacher_id(cfg: SynthesisConfig) -> str:
    return BACKENDS[cfg.teacher].ident(cfg.settings())


def max_tokens(task: Task, cfg: SynthesisConfig) -> int:
    return min(task.max_target_tokens, cfg.max_new_tokens or task.max_target_tokens)
