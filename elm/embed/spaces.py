"""The embedding spaces an ELM can read, and which artifact holds each.

A space is a kind of entity (movie or user) embedded by one stage: its vectors are the table of that kind
(``movies.parquet``, ``users.parquet``) in the stage's artifact, and the ELM knows it by the name
``<stage>_<kind>s`` (``semantic_movies``). Synthesis, training and evaluation take their spaces from here,
so a new embedding space is a new stage in ``elm/embed/`` plus one line in ``SPACES``.
"""

from __future__ import annotations

from dataclasses import dataclass

from elm import vectors as vec


@dataclass(frozen=True)
class Space:
    stage: str
    """The stage whose artifact holds the vectors."""
    kind: str
    """"movie" or "user" (elm.vectors.KINDS)."""

    @property
    def name(self) -> str:
        return f"{self.stage}_{self.kind}s"

    @property
    def table(self) -> str:
        return vec.TABLES[self.kind]


SPACES = (
    Space("semantic", "movie"),    # sentence encoder over each movie's document (elm/embed/semantic.py)
    Space("behavioral", "movie"),  # WALS item factors (elm/embed/behavioral.py)
    Space("behavioral", "user"),   # WALS user factors
)

SPACE_STAGES = tuple(dict.fromkeys(s.stage for s in SPACES))
"""The stages that publish vectors: synthesis, training and evaluation read each of them."""


def stages_of(kind: str) -> tuple[str, ...]:
    """The stages with a space of this kind: the choices of a movie slot's space, say."""
    return tuple(s.stage for s in SPACES if s.kind == kind)


def get_space(stage: str, kind: str) -> Space:
    for s in SPACES:
        if (s.stage, s.kind) == (stage, kind):
            return s
    raise ValueError(f"no {kind} space from the {stage!r} stage; {kind} spaces come from {list(stages_of(kind))}")
