"""What the Describer gives back: an Answer per prompt, a SlotReport per vector that went into it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


NORM_SLACK = 2.0
"""A vector's norm is reported when it is beyond the real vectors' norm range by more than this factor
(an interpolation between two real vectors is a little shorter than both, and not worth a warning)."""


@dataclass(frozen=True)
class SlotReport:
    """What filled one slot of a prompt, and how far it is from the real entities of its space."""

    space: str
    """The embedding space (SpaceSpec.name) the vector was read as."""
    entity_id: int | None
    """The movie/user id it was looked up by; None for a raw vector."""
    nearest_id: int | None
    """The real entity with the most similar vector (None when the space has no table to search)."""
    nearest_title: str | None
    """That entity's title when known (movies), else None."""
    nearest_cosine: float | None
    """Cosine similarity to it: ~1.0 for an entity's own vector, low far from the data."""
    reference_cosine: float | None = None
    """The 5th percentile of real entities' cosine to their own nearest neighbour in this space."""
    label: str = ""
    """The input, for display: "movieId 1", "vectors[0]"."""
    id_name: str | None = None
    """The id column of the space's table ("movieId", "userId")."""
    note: str | None = None
    """Why there is no nearest entity when there is a table (a zero vector has no direction)."""
    norm: float | None = None
    """The vector's L2 norm."""
    norm_range: tuple[float, float] | None = None
    """Smallest and largest norm of the space's real vectors."""

    @property
    def norm_outside(self) -> bool | None:
        """True when the norm is more than ``NORM_SLACK`` times beyond the real vectors' range (the adapter
        normalises its input, so a scaled vector is read as its direction alone: worth saying)."""
        if self.norm is None or self.norm_range is None:
            return None
        lo, hi = self.norm_range
        return self.norm < lo / NORM_SLACK or self.norm > hi * NORM_SLACK

    @property
    def outside(self) -> bool | None:
        """True when the vector is further from the data than 95% of real entities are from each other."""
        if self.nearest_cosine is None or self.reference_cosine is None:
            return None
        return self.nearest_cosine < self.reference_cosine

    def to_dict(self) -> dict:
        return asdict(self) | {"outside": self.outside, "norm_outside": self.norm_outside}

    def describe(self) -> str:
        """One line: "semantic_movies  movieId 1: nearest Toy Story (1995) (movieId 1), cosine 1.000"."""
        head = f"{self.space}  {self.label}"
        if self.note:
            return f"{head}: {self.note}"
        if self.nearest_id is None:
            return f"{head}: no vector table to compare with"
        name = f"{self.nearest_title} ({self.id_name} {self.nearest_id})" if self.nearest_title \
            else f"{self.id_name} {self.nearest_id}"
        line = f"{head}: nearest {name}, cosine {self.nearest_cosine:.3f}"
        noun = {"movieId": "movies", "userId": "users"}.get(self.id_name or "", "entities")
        if self.outside:
            line += (f"  << far from the data: 95% of real {noun} have a neighbour at cosine >= "
                     f"{self.reference_cosine:.3f}")
        if self.norm_outside:
            lo, hi = self.norm_range
            line += (f"  << norm {self.norm:.4g}, real {noun} have {lo:.4g} to {hi:.4g}: the adapter normalises "
                     f"it, so only its direction is read")
        return line


@dataclass(frozen=True)
class Answer:
    """The ELM's text for one prompt, with a report on every vector that went into it."""

    text: str
    slots: list[SlotReport]
    prompt: str
    """The ELM prompt, with one EMB_TOKEN per slot."""
    task: str | None = None

    def to_dict(self) -> dict:
        return {"task": self.task, "prompt": self.prompt, "text": self.text,
                "slots": [s.to_dict() for s in self.slots]}

    def format(self) -> str:
        """Human-readable: a header, the text indented, one distance line per slot."""
        head = f"[{self.task or 'prompt'}] " + ", ".join(s.label for s in self.slots)
        body = "  " + (self.text or "(empty answer)").replace("\n", "\n  ")
        return "\n".join([head, body, *("  - " + s.describe() for s in self.slots)])


def answers_frame(answers: Sequence[Answer]) -> pd.DataFrame:
    """One row per (answer, slot): for tables and DuckDB."""
    import pandas as pd

    return pd.DataFrame([{"answer": i, "task": a.task, "text": a.text, "slot": j, **s.to_dict()}
                         for i, a in enumerate(answers) for j, s in enumerate(a.slots)])


__all__ = ["Answer", "SlotReport", "answers_frame"]
