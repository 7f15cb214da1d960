"""The `template` teacher: deterministic targets composed only from an entity's own metadata.

No LLM, no network, no randomness: it exists so the whole pipeline (targets -> training -> metrics) runs
and is testable anywhere, and as a floor an LLM teacher has to beat. Its texts say only what the facts
support (genres, year, user tags; for users their ratings), shaped per task, and never name the movie:
the ELM must learn to describe a vector, not to recall a title.

    TemplateTeacher().generate(TASKS["summary"], movie_facts_row)
    -> "An animated film from the mid 1990s that mixes adventure, animation, family entertainment and comedy. ..."

The words per genre are in template_genres.py; this file holds the sentences.

Why this file is long: one small function per task, 24 of them, over shared helpers; read top to
bottom it is the catalog of what the template says, and split by task it would scatter those helpers.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from elm.synth.catalog import Task
from elm.synth.checks import mentions
from elm.synth.facts import NOT_A_GENRE  # a screen format says nothing about the story
from elm.synth.teachers.template_genres import FALLBACK_STRENGTHS, FALLBACK_WEAKNESSES, Genre, genre_info

TOKENS_PER_WORD = 1.4
"""Rough tokenizer ratio for English prose, used to keep targets within max_target_tokens."""
MAX_TAGS = 3
"""User tags quoted per movie: more reads as a tag dump, not prose."""
MAX_GENRES = 4
"""Genres named per movie (some have ten)."""
MIN_NAME_CHARS = 4
"""Sentences naming the movie are dropped, but titles shorter than this ("It", "Up", "M") are everyday words."""


# -----------------------------------------------------------------------------
# what the facts allow us to say about one movie


def _as_list(x) -> list:
    """A facts field as a list: lists and arrays as is, a missing value as []."""
    if isinstance(x, (list, tuple, np.ndarray)):
        return list(x)
    return [] if x is None or pd.isna(x) else [x]


def _and(items) -> str:
    """"a", "a and b", "a, b and c"; "" for none."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _quoted(tags) -> str:
    """'"pixar" and "fun"'."""
    return _and([f'"{t}"' for t in tags])


def _an(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


@dataclass(frozen=True)
class Movie:
    """A movie as the template sees it; built by Movie.of(facts)."""

    key: int
    """Stable id (movieId) that picks the phrasing."""
    genres: tuple[Genre, ...]
    """Story genres, at most MAX_GENRES, formats dropped."""
    tags: tuple[str, ...]
    """User tags safe to quote: never one that names the movie (or the other movie of a pair)."""
    year: int | None
    """Release year, when known."""

    @classmethod
    def of(cls, facts: dict, avoid: tuple[str, ...] = ()) -> Movie:
        key = facts.get("movieId")
        year = facts.get("year")
        year = None if year is None or pd.isna(year) else int(year)
        names = tuple(n for n in (facts.get("name"), *avoid) if isinstance(n, str) and n.strip())
        genres = tuple(genre_info(g) for g in _as_list(facts.get("genres")) if g not in NOT_A_GENRE)[:MAX_GENRES]
        nouns = {g.noun for g in genres} | {g.lower() for g in _as_list(facts.get("genres"))}
        tags = []
        for t in [*_as_list(facts.get("tags")), *_as_list(facts.get("themes"))]:
            t = str(t).strip().lower()
            # A tag that names the movie leaks its identity; one that repeats a genre adds nothing.
            if (not t or len(t) > 40 or t in nouns or t in tags
                    or any(mentions(t, n) or mentions(n, t) for n in names)):
                continue
            tags.append(t)
        if not genres and not tags and year is None:
            raise ValueError(f"movie {key} ({facts.get('name')!r}) has no metadata: no genres, tags or year")
        return cls(int(key) if key is not None and not pd.isna(key) else 0, genres, tuple(tags[:MAX_TAGS]), year)

    # --- phrases -------------------------------------------------------------

    @property
    def kind(self) -> str:
        nouns = {g.noun for g in self.genres}
        return "documentary" if "documentary" in nouns else "animated film" if "animation" in nouns else "film"

    @property
    def era(self) -> str:
        """"mid 1990s", or "" without a year."""
        if self.year is None:
            return ""
        d = self.year % 10
        return f"{'early' if d < 3 else 'mid' if d < 7 else 'late'} {self.year - d}s"

    @property
    def what(self) -> str:
        """"an animated film from the mid 1990s"."""
        return _an(self.kind) + (f" from the {self.era}" if self.era else "")

    @property
    def G(self) -> str:
        """"adventure, animation and comedy"; "" without genres. "documentary" is already the kind."""
        return _and([g.noun for g in self.genres if g.noun != "documentary"])

    @property
    def T(self) -> str:
        """'"pixar" and "fun"'; "" without tags."""
        return _quoted(self.tags)

    @property
    def s(self) -> list[str]:
        """Strengths, genre ones first; always at least three."""
        return [g.strength for g in self.genres] + list(FALLBACK_STRENGTHS)

    @property
    def w(self) -> list[str]:
        """Weaknesses, genre ones first; always at least three."""
        return [g.weakness for g in self.genres] + list(FALLBACK_WEAKNESSES)

    @property
    def aud(self) -> list[str]:
        """Audiences, genre ones first; always at least two."""
        fallback = [f"fans of {self.era} cinema"] if self.era else []
        return [g.audience for g in self.genres] + fallback + ["curious viewers", "anyone open to something new"]


# -----------------------------------------------------------------------------
# the teacher


def _fit(parts: list[str | None], max_tokens: int, avoid: tuple[str, ...] = (), sep: str = " ",
         n_items: int | None = None) -> str:
    """Join the parts that exist and name no avoided title, dropping trailing ones (then words) to fit the bound.

    n_items: a numbered list of exactly that many of the parts (the rest are spares for dropped ones).
    """
    avoid = tuple(n for n in avoid if isinstance(n, str) and len(n.strip()) >= MIN_NAME_CHARS)
    parts = [p for p in parts if p and not any(mentions(p, n) for n in avoid)]
    if n_items is not None:
        if len(parts) < n_items:
            raise ValueError(f"only {len(parts)} of {n_items} items can be written without naming {avoid}")
        parts = [f"{i}. {_cap(p)}." for i, p in enumerate(parts[:n_items], 1)]
    if not parts:
        raise ValueError(f"no text can be written without naming {avoid}")
    budget = int(max_tokens / TOKENS_PER_WORD)
    while len(parts) > 1 and len(sep.join(parts).split()) > budget and n_items is None:
        parts.pop()
    text = sep.join(parts)
    if len(text.split()) > budget:  # one sentence alone too long: cut it
        text = " ".join(text.split()[:budget]).rstrip(",;:.") + "."
    return text


class _Picker:
    """Chooses among phrasings by a stable hash of (task, ids, call number): varied across movies, fixed per movie."""

    def __init__(self, *key) -> None:
        self.key, self.n = "|".join(map(str, key)), 0

    def __call__(self, *options: str) -> str:
        self.n += 1
        return options[zlib.crc32(f"{self.key}|{self.n}".encode()) % len(options)]


class TemplateTeacher:
    """Deterministic targets from metadata only. Same facts, same task -> same text."""

    name = "template"

    def generate(self, task: Task, facts: dict, partner_facts: dict | None = None) -> str:
        """The target text; ValueError when the facts say nothing (or nothing that avoids the title)."""
        limit = task.max_target_tokens
        if task.slots == ("user",):  # a profile may name the movies a user rated: they are other entities
            return _fit(_user_profile(facts, _Picker(task.name, facts.get("userId"))), limit)
        if task.partner is not None:
            if task.name not in _PAIR:
                raise ValueError(f"the template teacher has no template for task {task.name!r}")
            if partner_facts is None:
                raise ValueError(f"task {task.name!r} needs partner_facts for its second movie")
            names = (facts.get("name"), partner_facts.get("name"))
            a, b = Movie.of(facts, avoid=names), Movie.of(partner_facts, avoid=names)
            return _fit(_PAIR[task.name](a, b, _Picker(task.name, a.key, b.key)), limit, names)
        if task.name not in _ONE and task.name not in _LISTS:
            raise ValueError(f"the template teacher has no template for task {task.name!r}")
        m, names = Movie.of(facts), (facts.get("name"),)
        pick = _Picker(task.name, m.key)
        if task.name in _LISTS:
            return _fit(_LISTS[task.name](m, pick), limit, names, sep="\n", n_items=5)
        return _fit(_ONE[task.name](m, pick), limit, names)


# --- one movie ---------------------------------------------------------------


def _opening(m: Movie, pick: _Picker) -> str:
    if not m.G:
        return _cap(m.what) + "."
    return _cap(pick(f"{m.what} that mixes {m.G}.", f"{m.what} built on {m.G}.", f"{m.what} blending {m.G}."))


def _tagline(m: Movie, pick: _Picker) -> str | None:
    return m.T and pick(f"Viewers remember it for {m.T}.", f"Audiences tag it with {m.T}.",
                        f"It is best known among viewers for {m.T}.")


def _summary(m, pick):
    return [_opening(m, pick), f"It offers {m.s[0]} and {m.s[1]}.", _tagline(m, pick)]


def _long_description(m, pick):
    year = f"Released in {m.year}, it" if m.year else "It"
    return [_opening(m, pick), f"{year} combines {m.s[0]} with {m.s[1]}.",
            len(m.genres) > 2 and f"There is also {m.s[2]}, which widens its appeal.",
            _tagline(m, pick), f"Its tone suits {m.aud[0]} and {m.aud[1]}.",
            f"Some viewers find {m.w[0]}, but most come for {m.s[0]}."]


def _positive_review(m, pick):
    return [pick(f"What a treat: {m.what} that gets its {m.G or 'story'} right.",
                 f"I loved this {m.kind}{' from the ' + m.era if m.era else ''}."),
            f"The highlight is {m.s[0]}, and {m.s[1]} keeps it going.",
            m.T and f"Fans rightly praise it as {m.T}.", f"Highly recommended for {m.aud[0]}."]


def _negative_review(m, pick):
    # The facts lead: a target over the synthesis cap loses its trailing sentences, and an opener without
    # them taught the ELM one sentence for every movie.
    era = f" from the {m.era}" if m.era else ""
    return [pick(f"I wanted to like this {m.G + ' ' if m.G else ''}{m.kind}{era}, but it disappointed me.",
                 f"This {m.G + ' ' if m.G else ''}{m.kind}{era} left me cold."),
            f"Its mix of {m.G} never quite gels, with {m.w[0]} and {m.w[1]}." if m.G
            else f"It suffers from {m.w[0]} and {m.w[1]}.",
            m.T and f"Even what people tag it with, {m.T}, wore thin for me.",
            f"Hard to recommend, even to {m.aud[0]}."]


def _neutral_review(m, pick):
    return [_cap(f"{m.what} with mixed results."), f"On the plus side it has {m.s[0]}; on the minus side, {m.w[0]}.",
            m.T and f"Viewers associate it with {m.T}.", f"Worth a look for {m.aud[0]}, less so for others."]


def _five_positive(m, pick):
    items = [m.s[i] for i in range(len(m.genres))]
    items += [f'what fans call "{t}"' for t in m.tags]
    items += [f"the feel of its era, the {m.era}"] if m.era else []
    return items + list(FALLBACK_STRENGTHS) + ["broad appeal for " + m.aud[0]]  # spares: generate keeps five


def _five_negative(m, pick):
    items = [m.w[i] for i in range(len(m.genres))]
    items += [f'a focus on "{t}" that not everyone will enjoy' for t in m.tags]
    items += [f"a {m.era} style that may feel dated today"] if m.era else []
    return items + list(FALLBACK_WEAKNESSES) + ["little to offer viewers outside " + m.aud[0]]


def _rewrite(m: Movie, pick: _Picker, mood: str, genre: str, change: str, result: str) -> list[str]:
    already = any(g.noun == genre for g in m.genres)
    story = f"{m.G} story" if m.G else "story"
    first = (f"It already has {genre} in it, but a {mood} version would push the {story} much further."
             if already else f"A {mood} version would keep the {story} and turn it towards {genre}.")
    return [first, m.T and f"Its {m.T} side would {change}.", pick(*result.split("|"))]


def _funnier(m, pick):
    return _rewrite(m, pick, "funnier", "comedy", "become a running gag",
                    "Serious moments would turn into slapstick and comic misunderstandings.|"
                    "Every tense scene would end in a pratfall or a punchline.") + [
        f"The result would be a light comedy for {m.aud[0]} and anyone who wants a laugh."]


def _sadder(m, pick):
    return _rewrite(m, pick, "sadder", "drama", "end in loss rather than triumph",
                    "The characters would not all make it to the end, and victories would come at a heavy price.|"
                    "Friendships would break apart, and the ending would be bittersweet at best.") + [
        "The tone would become a slow, melancholic tragedy."]


def _scarier(m, pick):
    return _rewrite(m, pick, "scarier", "horror", "become a source of dread",
                    "Darkness, isolation and a threat that grows scene by scene would replace any comfort.|"
                    "Familiar places would turn menacing, and something unseen would hunt the characters.") + [
        "It would end as a tense horror film rather than a safe night in."]


def _improve(m, pick):
    return [f"The movie could be improved by addressing {m.w[0]}.", f"Sharpening {m.w[1]} would also help.",
            m.T and f"It should build more on what viewers already value, {m.T}.",
            f"Leaning harder into {m.s[0]} would make it stronger."]


def _movie_to_viewer(m, pick):
    return [f"It suits {m.aud[0]} and {m.aud[1]}.",
            f"Anyone who enjoys {m.G or 'films'}{' from the ' + m.era if m.era else ''} will feel at home.",
            m.T and f"Viewers drawn to {m.T} will get the most out of it."]


def _pitch(m, pick):
    return [pick(f"Picture {m.what}: a story that mixes {m.G or 'genres'}.",
                 f"Here is {m.what} with {m.G or 'a story'} at its heart."),
            f"It delivers {m.s[0]} and {m.s[1]}.", m.T and f"Its hooks are {m.T}.",
            f"It speaks directly to {m.aud[0]}, a proven audience."]


def _classics(m, pick):
    era = f"{m.era} " if m.era else ""
    return [f"It belongs in a curated classics collection as a standout {era}{m.kind}"
            + (f" of {m.G}." if m.G else "."), f"It still holds up thanks to {m.s[0]}.",
            m.T and f"Viewers keep returning to it for {m.T}."]


def _explain_to_child(m, pick):
    said = [g.child for g in m.genres[:2]]
    return [f"This is a movie that {_and(said)}." if said else "This is a movie for grown-ups and kids to discover.",
            f"It came out in {m.year}, a long time ago." if m.year else None,
            m.T and f"People who watched it say it is about {m.T}."]


def _convince_friend(m, pick):
    return [pick("You have to watch this one with me!", "Trust me, you need to see this one."),
            f"It's {m.what}" + (f" mixing {m.G}" if m.G else "") + f", and you'd love it for {m.s[0]}.",
            m.T and f"Everyone says it's all about {m.T}."]


def _convince_skeptic(m, pick):
    # Facts first, as in _negative_review.
    return [f"I know {m.what}{' mixing ' + m.G if m.G else ''} might not look like your kind of thing, but give "
            f"it a chance.",
            f"It is more rewarding than it sounds, thanks to {m.s[0]}.",
            m.T and f"Even doubters end up remembering it for {m.T}."]


def _convince_critic(m, pick):
    return [_cap(f"{m.what}, it is a notable example of {m.G or 'its kind'}."),
            f"Its craft shows in {m.s[0]} and {m.s[1]}.",
            m.T and f"Viewers single out {m.T}, a reputation that deserves a critical look."]


def _dissuade_friend(m, pick):
    return [pick("Honestly, I'd skip this one.", "I wouldn't bother with this one."),
            f"It's {m.what}" + (f" mixing {m.G}" if m.G else "") + f", but it suffers from {m.w[0]}.",
            f"Unless you're really into {m.T}, pick something else." if m.T
            else "There are better ways to spend an evening."]


def _dissuade_critic(m, pick):
    return [f"This {m.kind} offers little for a critic's time.",
            f"It leans on convention, with {m.w[0]} and {m.w[1]}.",
            m.T and f"What viewers praise, {m.T}, is not enough to make it essential viewing."]


_ONE = {"summary": _summary, "positive_review": _positive_review, "negative_review": _negative_review,
        "neutral_review": _neutral_review, "long_description": _long_description, "funnier_plot": _funnier,
        "sadder_plot": _sadder, "scarier_plot": _scarier, "improve": _improve, "movie_to_viewer": _movie_to_viewer,
        "pitch": _pitch, "classics_collection": _classics, "explain_to_child": _explain_to_child,
        "convince_friend": _convince_friend, "convince_skeptic": _convince_skeptic,
        "convince_critic": _convince_critic, "dissuade_friend": _dissuade_friend, "dissuade_critic": _dissuade_critic}
_LISTS = {"five_positive_characteristics": _five_positive, "five_negative_characteristics": _five_negative}


# --- two movies --------------------------------------------------------------


def _shared(a: Movie, b: Movie) -> tuple[list[str], list[str], list[str], list[str]]:
    """(shared genre nouns, only-a genre nouns, only-b genre nouns, shared tags)."""
    ga, gb = [g.noun for g in a.genres], [g.noun for g in b.genres]
    return ([g for g in ga if g in gb], [g for g in ga if g not in gb], [g for g in gb if g not in ga],
            [t for t in a.tags if t in b.tags])


def _years(a: Movie, b: Movie) -> str | None:
    if a.era and a.era == b.era:
        return f"Both come from the {a.era}."
    if a.year and b.year:
        return f"The first is from {a.year} and the second from {b.year}."
    return None


def _similarities(a, b, pick):
    both, only_a, only_b, tags = _shared(a, b)
    first = (f"Both movies are {_and(both)} stories." if both else
             f"On the surface they differ, the first leaning on {a.G or 'its own style'} "
             f"and the second on {b.G or 'its own style'}.")
    last = (f"Viewers tag both with {_and(tags)}." if tags else
            f"Both reward viewers who enjoy {a.s[0]}." if both else "Both appeal to curious viewers.")
    return [first, _years(a, b), last]


def _interpolation(a, b, pick):
    genres = list(dict.fromkeys([g.noun for g in a.genres[:2]] + [g.noun for g in b.genres[:2]]))
    tags = list(dict.fromkeys(a.tags[:2] + b.tags[:2]))
    years = [y for y in (a.year, b.year) if y]
    blend = Movie(0, (), (), round(sum(years) / len(years)) if years else None)
    kind = "animated film" if "animation" in genres else "documentary" if "documentary" in genres else "film"
    era = f" set in the spirit of the {blend.era}" if blend.era else ""
    return [pick(f"Imagine {_an(kind)}{era} that fuses {_and(genres) or 'two styles'}.",
                 f"Picture {_an(kind)}{era} blending {_and(genres) or 'two styles'}."),
            f"It would combine {a.s[0]} with {b.s[0] if b.s[0] != a.s[0] else b.s[1]}.",
            tags and f"Its story would bring together {_quoted(tags)}.",
            f"The result would appeal to both {a.aud[0]} and {b.aud[0] if b.aud[0] != a.aud[0] else b.aud[1]}."]


def _liked_a_likes_neighbour(a, b, pick):
    both, only_a, only_b, tags = _shared(a, b)
    first = (f"Someone who enjoyed {a.s[0]} in the first movie will find the same {_and(both)} appeal in the second."
             if both else f"Someone who enjoyed {a.s[0]} in the first movie will find a similar spirit in the second.")
    return [first, f"The second movie adds {_and(only_b)}, a natural next step." if only_b else _years(a, b),
            f"Both are remembered for {_and(tags)}." if tags else
            (b.T and f"It also offers what viewers call {b.T}.")]


def _differs_from_neighbour(a, b, pick):
    both, only_a, only_b, tags = _shared(a, b)
    if only_a or only_b:
        first = f"Where the first movie leans on {_and(only_a) or _and(both) or 'its own style'}, " \
                f"the second leans on {_and(only_b) or _and(both) or 'its own style'}."
    else:
        first = f"Both are {_and(both) or 'hard-to-classify'} stories, so the difference lies in tone and detail."
    era = (f"The first dates from {a.year}, the second from {b.year}." if a.year and b.year and a.era != b.era
           else "They come from the same era." if a.era and a.era == b.era else None)
    ta, tb = [t for t in a.tags if t not in tags], [t for t in b.tags if t not in tags]
    last = f"The first is remembered for {_quoted(ta)}, the second for {_quoted(tb)}." if ta and tb else None
    return [first, era, last]


_PAIR = {"similarities": _similarities, "interpolation": _interpolation,
         "liked_a_likes_neighbour": _liked_a_likes_neighbour, "differs_from_neighbour": _differs_from_neighbour}


# --- users -------------------------------------------------------------------


def _user_profile(facts: dict, pick: _Picker) -> list[str | None]:
    liked, disliked = _as_list(facts.get("liked")), _as_list(facts.get("disliked"))
    top = [genre_info(g) for g in _as_list(facts.get("top_genres")) if g not in NOT_A_GENRE]
    if not liked and not disliked and not top:
        raise ValueError(f"user {facts.get('userId')} has no metadata: no liked or disliked movies and no top genres")
    n, mean = facts.get("n_ratings"), facts.get("mean_rating")
    rater = None
    if n and mean is not None and not pd.isna(mean):
        style = "a generous rater" if mean >= 4 else "a demanding rater" if mean < 3 else "a measured rater"
        rater = f"Across {int(n)} ratings they are {style}, averaging {mean:.1f} of 5."
    return [pick(f"This user gravitates to {_and([g.noun for g in top])}.",
                 f"This user mostly enjoys {_and([g.noun for g in top])}.") if top
            else "This user has no clear favourite genre.",
            # Favourites second: targets are capped (SynthesisConfig.max_new_tokens), and this is the sentence
            # that ranks movies the way the CF model does (BC); genre words alone rank them at random.
            liked and f"Favourites include {_and(liked[:3])}.",
            top and f"They seem to value {top[0].strength}.",
            f"They disliked {_and(disliked[:3])}." if disliked else "They rarely rate a movie low.",
            rater]
