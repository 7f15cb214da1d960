"""Facts read back from a text: does a description state the movie's decade and genres?

The most readable test of whether a text follows its vector: a summary of a 1994 comedy that says "a
comedy from the mid 1990s" got both right, whatever an encoder thinks of it. Scored against the movie's
own facts and, as the control, against another movie's (a shuffled pairing): a text that ignores its vector
scores the same on both.

    stated_decades("A drama from the late 1970s ...")      -> [1970]
    stated_genres("A funny animated adventure ...")         -> {"Animation", "Adventure", "Comedy"}
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

GENRE_WORDS: dict[str, tuple[str, ...]] = {
    "Action": ("action",),
    "Adventure": ("adventure", "adventures"),
    "Animation": ("animation", "animated", "cartoon"),
    "Children": ("children", "family", "kids"),
    "Comedy": ("comedy", "comedies", "comedic"),
    "Crime": ("crime", "criminal", "criminals"),
    "Documentary": ("documentary",),
    "Drama": ("drama", "dramas", "dramatic"),
    "Fantasy": ("fantasy",),
    "Film-Noir": ("noir",),
    "Horror": ("horror",),
    "Musical": ("musical", "musicals", "music"),
    "Mystery": ("mystery", "mysteries"),
    "Romance": ("romance", "romantic"),
    "Sci-Fi": ("science fiction", "science-fiction", "sci-fi"),
    "Thriller": ("thriller", "thrillers", "suspense"),
    "War": ("war",),
    "Western": ("western", "westerns"),
}
"""MovieLens genres and the words that state them in prose (the template teacher's nouns among them)."""

_GENRE_RE = {g: re.compile(r"(?<![\w-])(" + "|".join(re.escape(w) for w in ws) + r")(?![\w-])", re.I)
             for g, ws in GENRE_WORDS.items()}
_DECADE = re.compile(r"(?<!\d)(1[89]\d0|20[0-9]0)s\b|(?<![\w\d])['’](\d)0s\b")


def stated_decades(text: str) -> list[int]:
    """Decades the text names, in order: "1990s" and "'90s" (read as 1990s) both give 1990."""
    out = []
    for full, short in _DECADE.findall(text or ""):
        out.append(int(full) if full else 1900 + 10 * int(short))
    return out


def stated_genres(text: str) -> set[str]:
    return {g for g, rx in _GENRE_RE.items() if rx.search(text or "")}


def decade_of(year) -> int | None:
    try:
        y = int(year)
    except (TypeError, ValueError):
        return None
    return y - y % 10


def fact_scores(text: str, year, genres: Iterable[str]) -> dict[str, float]:
    """decade: 1 when the first decade the text states is the movie's, 0 when it states another or none
    (NaN without a year); genre precision/recall/F1 of the genres it states against the movie's (a text that
    states none has F1 0; precision is NaN then, and all three are NaN for a movie with no known genre)."""
    truth_decade = decade_of(year)
    said = stated_decades(text)
    decade = np.nan if truth_decade is None else float(bool(said) and said[0] == truth_decade)
    truth = {g for g in genres if g in GENRE_WORDS}
    stated = stated_genres(text)
    hit = len(stated & truth)
    precision = hit / len(stated) if stated else np.nan
    recall = hit / len(truth) if truth else np.nan
    f1 = np.nan if not truth else 0.0 if hit == 0 else 2 * precision * recall / (precision + recall)
    return {"decade": decade, "genre_precision": precision, "genre_recall": recall, "genre_f1": f1}
