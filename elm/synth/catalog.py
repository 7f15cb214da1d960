"""The ELM task catalog: 24 movie tasks and one user task, each defined once (docs/METHOD.md, "The task catalog").

A task has two faces:

    teacher_instruction  what the teacher LLM is asked. It SEES the entity: "{title}", "{facts}" (two-movie
                         tasks also "{title_b}", "{facts_b}"; the user task "{liked}", "{disliked}", "{facts}").
    elm_prompt           what the ELM sees: embedding slots "{m0}", "{m1}", "{u0}" where the titles would be.

render_elm_prompt turns each slot into EMB_TOKEN; the model later splices the adapter output of the slot's
vector at those tokens, in order. Movie slots are numbered m0, m1, ...; user slots u0, u1, ....

Targets describe a vector, not a title: the teacher is told not to name movies, because a target that names
its movie teaches the ELM to guess titles and is rejected by target validation.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from elm.model.slots import EMB_TOKEN
from elm.vectors import KINDS

SLOT_KINDS = KINDS
"""What a slot can hold: a movie or a user (elm.vectors.KINDS). Each renders to EMB_TOKEN in an ELM prompt."""
SLOT_PREFIX = {"movie": "m", "user": "u"}
"""Slot field names per kind: the i-th movie slot is {m<i>}, the j-th user slot {u<j>}."""
PARTNERS = ("random", "nearest")
"""How the second movie of a two-movie task is chosen: uniformly at random, or the first movie's nearest
neighbour in the embedding space being trained."""

_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


def slot_fields(slots: tuple[str, ...]) -> list[str]:
    """("movie", "movie", "user") -> ["m0", "m1", "u0"]: the prompt fields the slots must appear as, in order."""
    seen = {k: 0 for k in SLOT_KINDS}
    out = []
    for kind in slots:
        out.append(f"{SLOT_PREFIX[kind]}{seen[kind]}")
        seen[kind] += 1
    return out


def teacher_fields(slots: tuple[str, ...]) -> set[str]:
    """The format fields a teacher instruction may use for these slots."""
    n_movies, n_users = slots.count("movie"), slots.count("user")
    fields = set()
    if n_movies >= 1:
        fields |= {"title", "facts"}
    if n_movies >= 2:
        fields |= {"title_b", "facts_b"}
    if n_users:
        fields |= {"liked", "disliked", "facts"}
    return fields


def _format_fields(template: str) -> list[str]:
    """Field names of a str.format template, in order of appearance (ValueError on broken braces)."""
    return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]


@dataclass(frozen=True)
class Task:
    """One ELM task: how its target is written (teacher) and how the ELM is asked for it (prompt)."""

    name: str
    """snake_case id, e.g. "summary", "interpolation"."""
    slots: tuple[str, ...]
    """Embedding space of each slot, in prompt order: ("movie",), ("movie", "movie") or ("user",)."""
    teacher_instruction: str
    """What the teacher is asked; format fields from teacher_fields(slots). The teacher sees titles and facts."""
    elm_prompt: str
    """What the ELM is asked; exactly the fields slot_fields(slots), in order, and nothing that names a title."""
    max_target_tokens: int
    """Upper bound on the target length in tokens; longer targets are cut or rejected downstream."""
    partner: str | None = None
    """Two-movie tasks only: how the second movie is chosen, one of PARTNERS."""

    def __post_init__(self) -> None:
        def bad(problem: str) -> ValueError:
            return ValueError(f"task {self.name!r}: {problem}")

        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise bad("name must be snake_case (lowercase letters, digits, single underscores)")
        if not isinstance(self.slots, tuple) or not self.slots:
            raise bad(f"slots must be a non-empty tuple, got {self.slots!r}")
        if unknown := [k for k in self.slots if k not in SLOT_KINDS]:
            raise bad(f"unknown slot kind(s) {unknown}; known: {list(SLOT_KINDS)}")
        n_movies, n_users = self.slots.count("movie"), self.slots.count("user")
        if n_movies > 2 or n_users > 1:
            raise bad(f"at most two movie slots and one user slot are supported, got {self.slots}")
        try:
            prompt_fields = _format_fields(self.elm_prompt)
            instr_fields = _format_fields(self.teacher_instruction)
        except ValueError as e:
            raise bad(f"malformed template braces: {e}") from None
        if EMB_TOKEN in self.elm_prompt:
            raise bad(f"elm_prompt must use slot fields, not a literal {EMB_TOKEN}")
        if prompt_fields != slot_fields(self.slots):
            raise bad(f"elm_prompt fields {prompt_fields} must be exactly {slot_fields(self.slots)} "
                      f"(one per slot, in order; no title or other fields)")
        if extra := sorted(set(instr_fields) - teacher_fields(self.slots)):
            allowed = sorted(teacher_fields(self.slots))
            raise bad(f"teacher_instruction uses unknown field(s) {extra}; allowed: {allowed}")
        if (self.partner is not None) != (n_movies == 2):
            raise bad("partner must be set exactly when the task has two movie slots")
        if self.partner is not None and self.partner not in PARTNERS:
            raise bad(f"partner {self.partner!r} is not one of {list(PARTNERS)}")
        if not isinstance(self.max_target_tokens, int) or not 8 <= self.max_target_tokens <= 512:
            raise bad(f"max_target_tokens must be an int in [8, 512], got {self.max_target_tokens!r}")


def render_elm_prompt(task: Task) -> str:
    """The ELM prompt with every slot replaced by EMB_TOKEN, e.g. "Summarize the movie <emb> in a few sentences." """
    return task.elm_prompt.format(**{f: EMB_TOKEN for f in slot_fields(task.slots)})


def render_teacher_prompt(task: Task, facts: dict, partner_facts: dict | None = None) -> str:
    """The teacher instruction filled from entity facts (rows of entity_facts.movie_facts / user_facts)."""
    if "user" in task.slots:
        return task.teacher_instruction.format(liked="; ".join(facts["liked"]) or "(none)",
                                               disliked="; ".join(facts["disliked"]) or "(none)", facts=facts["facts"])
    values = {"title": facts["title"], "facts": facts["facts"]}
    if task.partner is not None:
        if partner_facts is None:
            raise ValueError(f"task {task.name!r} needs partner_facts for its second movie")
        values |= {"title_b": partner_facts["title"], "facts_b": partner_facts["facts"]}
    return task.teacher_instruction.format(**values)


# -----------------------------------------------------------------------------
# the catalog

# Grounding shared by every movie task: the facts come from MovieLens itself, so leaning on them limits
# what the teacher invents (docs/METHOD.md, "Known weaknesses").
_ONE = ("You are given facts about a movie from the MovieLens catalog.\n"
        "Movie: {title}\nFacts: {facts}\n"
        "Rely on these facts (title, year, genres, user tags); add only details you are confident are true "
        "of this film, and invent no plot points, names or numbers.\n")
_TWO = ("You are given facts about two movies from the MovieLens catalog.\n"
        "First movie: {title}\nFacts: {facts}\n"
        "Second movie: {title_b}\nFacts: {facts_b}\n"
        "Rely on these facts (titles, years, genres, user tags); add only details you are confident are true "
        "of these films, and invent no plot points, names or numbers.\n")
_NO_TITLE = 'Do not mention the title; call it "the movie".'
_NO_TITLES = 'Do not mention either title; call them "the first movie" and "the second movie".'


def _movie(name: str, prompt: str, ask: str, sentences: int, tokens: int) -> Task:
    rules = f"Write plain prose, no lists or headings, at most {sentences} sentences. {_NO_TITLE}"
    return Task(name, ("movie",), f"{_ONE}Task: {ask}\n{rules}", prompt, tokens)


def _listing(name: str, prompt: str, ask: str, tokens: int) -> Task:
    rules = f"Give exactly five items as a numbered list (1. to 5.), one short sentence each. {_NO_TITLE}"
    return Task(name, ("movie",), f"{_ONE}Task: {ask}\n{rules}", prompt, tokens)


def _pair(name: str, prompt: str, ask: str, sentences: int, tokens: int, partner: str,
          no_names: str = _NO_TITLES) -> Task:
    rules = f"Write plain prose, no lists or headings, at most {sentences} sentences. {no_names}"
    return Task(name, ("movie", "movie"), f"{_TWO}Task: {ask}\n{rules}", prompt, tokens, partner)


_USER = Task(
    "user_profile", ("user",),
    "You are given the ratings of one MovieLens user.\n"
    "Movies they rated highest: {liked}\nMovies they rated lowest: {disliked}\nAlso: {facts}\n"
    "Rely only on these ratings; do not guess the user's age, gender, job or anything else about their life.\n"
    "Task: Describe this user's movie preferences: the genres, themes and styles they enjoy and those they avoid.\n"
    'Write plain prose in the third person ("this user"), no lists, at most 5 sentences. '
    "You may name the listed movies as examples.",
    "Describe the movie preferences of the user {u0}.", 160)

_CATALOG = [
    _movie("summary", "Summarize the movie {m0} in a few sentences.",
           "Summarize the movie: its premise, tone and genre.", 3, 96),
    _movie("positive_review", "Write a positive review of the movie {m0}.",
           "Write a positive review of the movie, as an enthusiastic viewer.", 4, 128),
    _movie("negative_review", "Write a negative review of the movie {m0}.",
           "Write a negative review of the movie, as a disappointed viewer.", 4, 128),
    _movie("neutral_review", "Write a balanced review of the movie {m0}.",
           "Write a neutral, balanced review of the movie that weighs its strengths and weaknesses.", 4, 128),
    _listing("five_positive_characteristics", "List five positive characteristics of the movie {m0}.",
             "List five positive characteristics of the movie.", 128),
    _listing("five_negative_characteristics", "List five negative characteristics of the movie {m0}.",
             "List five negative characteristics of the movie.", 128),
    _movie("long_description", "Describe the movie {m0} in detail.",
           "Describe the movie in detail: premise, setting, tone, style and what it is remembered for.", 7, 192),
    _movie("funnier_plot", "Describe a funnier version of the plot of the movie {m0}.",
           "Retell the plot of the movie as a comedy: what would change to make it funnier?", 4, 128),
    _movie("sadder_plot", "Describe a sadder version of the plot of the movie {m0}.",
           "Retell the plot of the movie as a tragedy: what would change to make it sadder?", 4, 128),
    _movie("scarier_plot", "Describe a scarier version of the plot of the movie {m0}.",
           "Retell the plot of the movie as a horror story: what would change to make it scarier?", 4, 128),
    _movie("improve", "How could the movie {m0} be improved?",
           "Suggest how the movie could be improved, naming its weak points and concrete fixes.", 4, 128),
    _movie("movie_to_viewer", "Describe the kind of viewer who would enjoy the movie {m0}.",
           "Describe the kind of viewer who would enjoy the movie, and why.", 3, 96),
    _movie("pitch", "Pitch the movie {m0} to a film studio.",
           "Pitch the movie to a film studio as if it were a new project: premise, audience and appeal.", 4, 128),
    _movie("classics_collection", "Explain why the movie {m0} belongs in a curated collection of classic films.",
           "Explain why the movie belongs in a curated collection of classic films.", 3, 96),
    _movie("explain_to_child", "Explain the movie {m0} to a ten-year-old.",
           "Explain the movie to a ten-year-old, in simple words.", 3, 96),
    _movie("convince_friend", "Convince a friend to watch the movie {m0}.",
           "Convince a friend to watch the movie, in a warm, casual voice.", 3, 96),
    _movie("convince_skeptic", "Convince someone who doubts they would enjoy it to watch the movie {m0}.",
           "Convince a skeptic, who doubts they would enjoy it, to watch the movie.", 3, 96),
    _movie("convince_critic", "Convince a demanding film critic to watch the movie {m0}.",
           "Convince a demanding film critic to watch the movie, on its craft and merits.", 3, 96),
    _movie("dissuade_friend", "Talk a friend out of watching the movie {m0}.",
           "Talk a friend out of watching the movie, in a warm, casual voice.", 3, 96),
    _movie("dissuade_critic", "Explain to a film critic why the movie {m0} is not worth their time.",
           "Explain to a demanding film critic why the movie is not worth their time.", 3, 96),
    # Similarities with a random partner are mostly "both are movies": a nearest neighbour shares enough
    # for the teacher to state real common ground instead of inventing it.
    _pair("similarities", "What do the movies {m0} and {m1} have in common?",
          "Describe what the two movies have in common.", 3, 96, "nearest"),
    _pair("interpolation", "Describe a movie that blends the movies {m0} and {m1}.",
          "Describe an imagined new movie that blends the two: its premise, tone and style, mixing "
          "elements of both.", 4, 128, "random",
          "Do not name either movie; describe the new movie on its own terms."),
    _pair("liked_a_likes_neighbour", "Explain why someone who liked the movie {m0} would also like the movie {m1}.",
          "Explain why someone who liked the first movie would also like the second movie.", 3, 96, "nearest"),
    _pair("differs_from_neighbour", "How does the movie {m0} differ from the movie {m1}?",
          "Describe how the first movie differs from the second movie.", 3, 96, "nearest"),
]

TASKS: dict[str, Task] = {t.name: t for t in [*_CATALOG, _USER]}
"""All 25 tasks by name, in docs/METHOD.md order: 24 movie tasks, then user_profile."""
assert len(TASKS) == len(_CATALOG) + 1, "duplicate task name in the catalog"
MOVIE_TASKS: list[str] = [t.name for t in _CATALOG]
USER_TASKS: list[str] = [_USER.name]


class UnknownTaskError(KeyError, ValueError):
    """A task name not in the catalog; catchable as KeyError or ValueError."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise UnknownTaskError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]


def select_tasks(names: list[str] | None) -> list[Task]:
    """Tasks in catalog order; None or ["all"] selects every task. Unknown names raise, listing the known."""
    if names is None or list(names) == ["all"]:
        return list(TASKS.values())
    if isinstance(names, str):
        raise TypeError(f"select_tasks takes a list of names, got the string {names!r}")
    if not names:
        raise ValueError("select_tasks: no task names given (use None or ['all'] for every task)")
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise UnknownTaskError(f"unknown task(s) {unknown}; known: all, {', '.join(TASKS)}")
    wanted = set(names)
    return [t for t in TASKS.values() if t.name in wanted]
