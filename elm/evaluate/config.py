"""What an evaluation runs: its config (EvalConfig), its error, the tasks its experiments describe with, and
which tasks it scores (selected_tasks)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from elm.embed.spaces import SPACE_STAGES
from elm.embed.splits import HELDOUT
from elm.configs import known_fields
from elm.lineage import StageSpec
from elm.evaluate.cav import parse_attribute
from elm.evaluate.interpolation import DEFAULT_ALPHAS, check_alphas
from elm.metrics.behavioral_consistency import DEFAULT_K
from elm.serve.decoding import DEFAULT_GUIDANCE_SCALE, check_guidance
from elm.serve.errors import DescribeError
from elm.synth.catalog import MOVIE_TASKS, get_task

SUMMARY_TASK = "summary"
"""The task interpolations and CAV moves are described with, and whose references their plots show."""
PROFILE_TASK = "user_profile"


EVALUATE = StageSpec("evaluate", inputs=("train", "synthesize", *SPACE_STAGES, "ingest", "splits"),
                     files=("generations.parquet", "scores.parquet", "controls.parquet", "interpolation.parquet",
                            "cav.parquet", "cav_classifiers.parquet", "eval_config.json"),
                     code_version="8")  # 2: every system's text cleaned of its movie's name; controls.parquet
# 3: the shuffled reference averages over every other entity; batched interpolation and CAV
# 4: scores.parquet: the baseline's references on its own movies (baseline_truth, baseline_random)
# 5: profile controls (BC specificity, the popular-titles control)
# 6: the decade + genres control (system "facts"); decoding without a repetition penalty
# 7: movie slots decoded with vector guidance (guidance_scale, elm/model/guidance.py)
# 8: title words removed before scoring too; the ELM against the baseline paired (tasks_above_baseline); the
#    baseline answers 12 movies per task
"""The stage's contract (elm/lineage.py). Its inputs are the train artifact and that artifact's lineage: the
vectors the model read, the task data, the ingested tables (context.resolve_inputs)."""


class EvaluationError(ValueError):
    """Evaluation inputs that cannot be evaluated: mismatched spaces, nothing held out, bad config."""


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how much of it. Defaults fit the embedded default on a 2-core CPU in minutes."""

    heldout_per_task: int = 24
    """Held-out movies scored per movie task (every one when the synthesize artifact has fewer). Each task
    draws its own movies, so 24 tasks x 24 cover nearly all of synthesis's 60 held-out movies. The headline's
    half-width: 0.13 at 12 per task, 0.11 at 24, 0.09 at all 60; docs/METHOD.md, "Sample sizes"."""
    heldout_users: int = 30
    """Held-out users whose profiles are scored with BC (every one when the synthesize artifact has fewer)."""
    baseline_per_task: int = 12
    """Of the held-out movies of each task, how many the text-only baseline also answers (the first ones,
    so its rows are paired with the ELM's). It reads longer prompts and is the slowest system to run; with 6,
    which system wins a task turned on one or two movies."""
    train_per_task: int = 2
    """Training entities per task, for the train/held-out gap (0 skips them)."""
    tasks: tuple[str, ...] | None = None
    """Tasks to evaluate (None: every task the synthesize artifact has held-out examples for)."""
    baseline: bool = True
    """Also run the text-only baseline (the base LLM reading titles) on held-out movie tasks."""
    baseline_model: str | None = None
    """The baseline's LLM (None: the ELM's own base model, the fair comparison)."""
    max_new_tokens: int | None = 96
    """Cap on generated tokens per text (None: each task's own budget). SC needs a few sentences, not 192
    tokens; the cap is what keeps evaluation within minutes on a CPU."""
    guidance_scale: dict = field(default_factory=lambda: dict(DEFAULT_GUIDANCE_SCALE))
    """Vector guidance of the ELM's decoding by slot kind, {"movie": 2.0, "user": 1.0} (elm/model/guidance.py;
    1 = off; one number sets both): the default of ``elm describe``, so the report measures the decoding users
    get."""
    batch_size: int = 16
    """Texts per generate call (16 decodes ~1.2x faster than 8 here: bench/bench_teacher.py)."""
    dtype: str = "auto"
    """Weights of the ELM and the baseline while generating: "float32", "bfloat16", or "auto" (bfloat16
    where it is native: a bf16 GPU, a CPU with AVX512-BF16/AMX; else float32). Greedy text in bfloat16 differs
    in wording from float32, not in what it says; the dtype used is recorded in eval_config.json."""
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    """Interpolation weights a in [0, 1]; 0 and 1 are the pair's own vectors."""
    interpolation_anchor: str = "Forrest Gump"
    """Title prefix of the movie every pair starts from (the paper's); the most rated movie when absent."""
    movie_pairs: int = 10
    """Movie pairs interpolated (0 skips)."""
    user_pairs: int = 3
    """Held-out user pairs interpolated and scored with BC (0 skips)."""
    cav_attributes: tuple[str, ...] = ("genre:Comedy", "genre:Horror", "genre:Romance", "tag:funny")
    """Soft attributes, "genre:<MovieLens genre>" or "tag:<tag>" (genome relevance >= 0.5 where the dataset
    has the genome, else any user applied the tag)."""
    cav_alphas: tuple[float, ...] = (0.0, 1.5, 3.0)
    """CAV steps, in standard deviations of the entities' projections on the CAV."""
    cav_movies: int = 10
    """Held-out movies without the attribute moved along each movie CAV (0 skips movie moves)."""
    cav_users: int = 10
    """Held-out users moved along each user CAV (0 skips user CAVs)."""
    cav_min_positives: int = 10
    """Fewer positive (or negative) training entities than this for an attribute is an error."""
    second_encoder: str | None = "all-mpnet-base-v2"
    """A second SC encoder, other than the one that made the semantic vectors (evaluate/second_encoder.py):
    held-out movie texts are scored again with it. Packaged offline (packaged-models.txt); None skips it."""
    bc_k: int = DEFAULT_K
    """NDCG cut-off of BC."""
    seed: int = 0
    """Which entities are sampled, and the random references."""

    def __post_init__(self) -> None:
        ints = ("heldout_per_task", "heldout_users", "baseline_per_task", "train_per_task", "movie_pairs",
                "user_pairs", "cav_movies", "cav_users")
        for name in ints:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"EvalConfig.{name} must be an int >= 0, got {getattr(self, name)!r}")
        if self.heldout_per_task < 2:
            raise ValueError(f"EvalConfig.heldout_per_task must be >= 2 (the random reference pairs entities), "
                             f"got {self.heldout_per_task}")
        for name in ("batch_size", "bc_k", "cav_min_positives"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"EvalConfig.{name} must be an int >= 1, got {getattr(self, name)!r}")
        if self.max_new_tokens is not None and not 8 <= self.max_new_tokens <= 512:
            raise ValueError(f"EvalConfig.max_new_tokens must be None or in [8, 512], got {self.max_new_tokens}")
        if self.tasks is not None:
            object.__setattr__(self, "tasks", tuple(self.tasks))
            for t in self.tasks:
                get_task(t)  # UnknownTaskError lists the known tasks
        try:
            object.__setattr__(self, "guidance_scale", check_guidance(self.guidance_scale, "EvalConfig.guidance_scale"))
        except DescribeError as e:
            raise ValueError(str(e)) from None
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"EvalConfig.dtype must be auto, float32 or bfloat16, got {self.dtype!r}")
        object.__setattr__(self, "alphas", tuple(float(a) for a in self.alphas))
        check_alphas(self.alphas, "EvalConfig.alphas")
        object.__setattr__(self, "cav_alphas", tuple(float(a) for a in self.cav_alphas))
        if not self.cav_alphas or any(not np.isfinite(a) for a in self.cav_alphas):
            raise ValueError(f"EvalConfig.cav_alphas must be a non-empty list of numbers, got {self.cav_alphas}")
        object.__setattr__(self, "cav_attributes", tuple(self.cav_attributes))
        for a in self.cav_attributes:
            parse_attribute(a)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> EvalConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in known_fields(cls, d).items()})

    @classmethod
    def load(cls, path: str | Path) -> EvalConfig:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read EvalConfig from {path}: {e}") from e


# -----------------------------------------------------------------------------
# which tasks


def selected_tasks(cfg: EvalConfig, examples: pd.DataFrame) -> list[str]:
    held = examples[examples["split"] == HELDOUT]
    have = set(held["task"])
    if cfg.tasks is not None:
        if missing := [t for t in cfg.tasks if t not in have]:
            raise EvaluationError(f"the synthesize artifact has no held-out examples for task(s) {missing} "
                                  f"(it has held-out examples for {sorted(have) or 'no task'})")
        return list(cfg.tasks)
    return [t for t in [*MOVIE_TASKS, PROFILE_TASK] if t in have]
