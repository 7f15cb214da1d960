"""How the ELM decodes by default, and the one setting with a structure of its own: guidance by slot kind.

``elm describe``, ``Describer`` and evaluation share these defaults, so the report measures the decoding users
get (docs/METHOD.md, "Decoding").
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from elm.serve.errors import DescribeError

DEFAULT_REPETITION_PENALTY = 1.0
"""Off: a penalty on repeated tokens rewrites facts whose digits repeat. At 1.2 the held-out summaries stated
the decade right 68% of the time, at 1.0 96% (50 movies; "1990s" repeats its 9, "2000s" its 0). The 4-gram ban
alone keeps greedy decoding out of loops."""
DEFAULT_GUIDANCE_SCALE: Mapping[str, float] = MappingProxyType({"movie": 2.0, "user": 1.0})
"""Vector guidance by slot kind (elm/model/guidance.py; 1 = plain decoding). Above 1 the text leans toward what
the vector says that the space's average vector does not; greedy decoding then runs twice the rows per
forward pass (1.4x the time).
Movies 2: held-out specificity rose from 53% to 71% of the teacher's and normalised SC from 0.60 to 0.77 (24
tasks x 24 movies); 3 went further on specificity (78%) but lost genre F1 and SC. Users 1: guided profiles
garbled the titles they name (normalised BC 0.60 at 1, 0.51 at 2, 0.33 at 3) and did not follow their user
more. A row with slots of several kinds takes the smallest of their scales (docs/METHOD.md, "Decoding")."""
DEFAULT_NO_REPEAT_NGRAM_SIZE = 4
"""4, not 3: "of the movie" may recur in a good review; a 4-gram loop is already a loop."""


def check_guidance(value: Any, what: str = "guidance_scale") -> dict[str, float]:
    """A guidance setting as {kind: scale} for both slot kinds: one number (every kind), a mapping from
    "movie"/"user" (an absent kind: 1), or text, "2" or "movie=2,user=1". Scales are in [0, 10]."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text) if "=" not in text else {k.strip(): float(v) for k, v in
                                                         (part.split("=", 1) for part in text.split(",") if part.strip())}
        except ValueError:
            raise DescribeError(f"{what}: {text!r} is neither a number nor movie=SCALE,user=SCALE") from None
    if isinstance(value, Mapping):
        if unknown := sorted(set(value) - {"movie", "user"}):
            raise DescribeError(f"{what}: keys are slot kinds, 'movie' and 'user'; got {unknown}")
        scales = {"movie": value.get("movie", 1.0), "user": value.get("user", 1.0)}
    else:
        scales = {"movie": value, "user": value}
    for kind, g in scales.items():
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not 0 <= g <= 10:
            raise DescribeError(f"{what}: the {kind} scale must be a number in [0, 10] (1 = off), got {g!r}")
    return {k: float(g) for k, g in scales.items()}


__all__ = ["DEFAULT_GUIDANCE_SCALE", "DEFAULT_NO_REPEAT_NGRAM_SIZE", "DEFAULT_REPETITION_PENALTY", "check_guidance"]
