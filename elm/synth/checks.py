"""Checks a teacher's text must pass before it becomes a training target.

    check_target(text, max_tokens=96, avoid=("Toy Story",), prompt=teacher_prompt)
    -> Checked(text="A playful animated adventure ...", reason=None, changed="stripped_title")

A target is cleaned where that loses nothing (a chatty "Here is a summary:" lead-in, sentences that name
the movie, text past the length bound) and rejected where it cannot be saved: empty, a copy of the prompt,
or a loop of the same words (small teachers do that). Rejected rows are kept with their reason, so a
synthesis run can say what it threw away and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TOKENS_PER_WORD = 1.4
"""Rough tokenizer ratio for English prose: length bounds are in tokens, checks count words."""
MIN_WORDS = 4
"""Shorter texts say too little about an entity to train on."""
MIN_NAME_CHARS = 4
"""Titles shorter than this ("Up", "It", "M") are everyday words: naming them cannot be detected."""
MIN_DISTINCT_TRIGRAMS = 0.5
"""Below this share of distinct word trigrams a text is a loop ("the movie is the movie is ...")."""
MAX_PROMPT_OVERLAP = 0.5
"""Above this share of the text's word 5-grams found in the prompt, the teacher echoed its instructions."""

REASONS = ("empty", "too_short", "repeats_prompt", "repetitive", "names_title")

_LEAD_IN = re.compile(r"^\s*(sure|certainly|of course|here(?:'s| is| are)|okay|ok)\b[^\n]*?:\s*\n?", re.I)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[\w']+")


@dataclass(frozen=True)
class Checked:
    text: str
    """The cleaned text ("" when rejected)."""
    reason: str | None
    """None when accepted, else one of REASONS."""
    changed: tuple[str, ...] = ()
    """What cleaning did: "lead_in", "stripped_title", "truncated"."""


def mentions(text: str, name: str) -> bool:
    """Whether text names name as whole words, ignoring case."""
    return bool(name) and re.search(rf"(?<!\w){re.escape(name.lower())}(?!\w)", text.lower()) is not None


def title_variants(name: str) -> tuple[str, ...]:
    """A MovieLens name and the titles inside it: "Three Colors: Red (Trois couleurs: Rouge)" also goes by
    "Three Colors: Red" and "Trois couleurs: Rouge"; "Seven (a.k.a. Se7en)" by "Seven" and "Se7en"."""
    if not isinstance(name, str) or not name.strip():
        return ()
    out = [name.strip()]
    main = re.sub(r"\s*\([^)]*\)", "", name).strip()
    out += [main] if main else []
    for alt in re.findall(r"\(([^)]*)\)", name):
        out.append(re.sub(r"^(a\.k\.a\.|aka)\s+", "", alt.strip(), flags=re.I))
    return tuple(dict.fromkeys(v for v in out if v))


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def _pieces(text: str) -> tuple[list[str], str]:
    """Lines of a multi-line text (a list keeps its items whole), else sentences; and the separator."""
    if "\n" in text.strip():
        return [p.strip() for p in text.splitlines() if p.strip()], "\n"
    return [p.strip() for p in _SENTENCE.split(text) if p.strip()], " "


def strip_names(text: str, avoid: tuple[str, ...]) -> tuple[str, bool]:
    """The text without its sentences (or list lines) that name any of ``avoid``, and whether it named one.
    Names shorter than MIN_NAME_CHARS are ignored ("M", "Up" would match ordinary words). Every text that is
    scored goes through this, so no system scores by naming the movie its vector stands for."""
    avoid = tuple(n for n in avoid if isinstance(n, str) and len(n.strip()) >= MIN_NAME_CHARS)
    if not avoid or not any(mentions(text, n) for n in avoid):
        return text, False
    pieces, sep = _pieces(text)
    return sep.join(s for s in pieces if not any(mentions(s, n) for n in avoid)), True


TITLE_STOPWORDS = frozenset(
    "the a an of and or in on at to for with from by as is it its into out over up no not this that his her "
    "my your our their de la le les el los das der die und movie movies film films part".split())
"""Words of a title that say nothing about which movie it is; every other title word of 3 or more letters
is a "title word" (title_words)."""


def title_words(avoid: tuple[str, ...]) -> tuple[str, ...]:
    """The distinctive words of titles, lower-cased: ("Three Colors: Red",) -> ("three", "colors", "red")."""
    words = (w for name in avoid if isinstance(name, str)
             for w in _WORD.findall(re.sub(r"\(\d{4}\)", " ", name.lower())))
    return tuple(dict.fromkeys(w.removesuffix("'s") for w in words
                               if len(w) >= 3 and w not in TITLE_STOPWORDS and not w.isdigit() or len(w) == 4
                               and w.isdigit()))


def strip_title_words(text: str, avoid: tuple[str, ...]) -> tuple[str, int]:
    """The text without any word of the titles in ``avoid`` (title_words), and how many it removed.

    Why: a sentence that names the whole title is removed (strip_names), but a text can still score by
    recall with pieces of it ("The story of Three Colors is ...", "Robin and King Richard"): the semantic
    documents begin with the title, so each title word moves a text toward its movie without saying anything
    about it. Scoring removes those words from every system's text alike."""
    words = title_words(avoid)
    if not words or not text:
        return text, 0
    pattern = re.compile(r"(?<![\w'])(?:" + "|".join(map(re.escape, sorted(words, key=len, reverse=True)))
                         + r")(?:'s)?(?![\w'])", re.IGNORECASE)
    out, n = pattern.subn("", text)
    if not n:
        return text, 0
    out = re.sub(r"[ \t]{2,}", " ", re.sub(r"([\"'])\s*\1", "", out))
    out = re.sub(r"[ \t]+([,.;:!?])", r"\1", out)
    return "\n".join(line.strip() for line in out.splitlines()).strip(), n


def _truncate(text: str, max_words: int) -> str:
    """Whole sentences (or lines) up to max_words; one over-long first sentence is cut at a word."""
    pieces, sep = _pieces(text)
    kept, n = [], 0
    for p in pieces:
        w = len(p.split())
        if n + w > max_words:
            break
        kept.append(p)
        n += w
    if not kept:
        return " ".join(text.split()[:max_words]).rstrip(",;:") + "..."
    return sep.join(kept)


def check_target(text: str, *, max_tokens: int, avoid: tuple[str, ...] = (), prompt: str = "") -> Checked:
    """Clean a teacher's text, or say why it cannot be a target. avoid: titles it must not name."""
    changed = []
    text = (text or "").strip()
    if (m := _LEAD_IN.match(text)) and text[m.end():].strip():
        text, changed = text[m.end():].strip(), ["lead_in"]
    if not text:
        return Checked("", "empty")

    text, named = strip_names(text, avoid)
    if named and not text:
        return Checked("", "names_title")
    if named:
        changed.append("stripped_title")

    words = _words(text)
    if len(words) < MIN_WORDS:
        return Checked("", "too_short")
    grams = _ngrams(words, 5)
    if prompt and grams:
        in_prompt = set(_ngrams(_words(prompt), 5))
        if sum(g in in_prompt for g in grams) / len(grams) > MAX_PROMPT_OVERLAP:
            return Checked("", "repeats_prompt")
    tri = _ngrams(words, 3)
    if len(tri) >= 6 and len(set(tri)) / len(tri) < MIN_DISTINCT_TRIGRAMS:
        return Checked("", "repetitive")

    max_words = max(MIN_WORDS, int(max_tokens / TOKENS_PER_WORD))
    if len(text.split()) > max_words:
        text = _truncate(text, max_words)
        changed.append("truncated")
    return Checked(text, None, tuple(changed))
