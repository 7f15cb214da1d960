"""The text-only baseline (docs/METHOD.md, "Experiments"): the base LLM reads titles where the ELM reads vectors.

The same task prompt the ELM gets, with each ``<emb>`` replaced by the movie's title, after one worked
example (a training movie's title and its teacher target for that task), in one user message. For an
interpolation the baseline is asked to describe a movie blending two titles at the given weight.

What the comparison shows: the ELM sees only a vector, the baseline sees a title and whatever the LLM
remembers about it. A small LLM remembers little, so the baseline mostly measures how far a title alone
gets a model; the references (random, teacher) put both on the same scale.

Decoding is the ELM's (greedy, no repeated 4-grams, elm/serve/describe.py) so the two differ only in
what they read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from elm.model.base_lm import LOAD_LOCK
from elm.serve.decoding import DEFAULT_NO_REPEAT_NGRAM_SIZE, DEFAULT_REPETITION_PENALTY
from elm.synth.catalog import Task, slot_fields
from elm.synth.teachers.local import LocalTeacher, LocalTeacherConfig
from elm.synth.teachers.base import SYSTEM_PROMPT


@dataclass(frozen=True)
class OneShot:
    """The worked example put before each baseline prompt: a training movie's titles and teacher target."""

    titles: tuple[str, ...]
    target: str


def task_prompt(task: Task, titles: Sequence[str]) -> str:
    """The ELM's prompt for ``task`` with titles where its movie slots are ("the movie "Heat (1995)"")."""
    fields = slot_fields(task.slots)
    if len(titles) != len(fields):
        raise ValueError(f"task {task.name!r} has {len(fields)} slot(s) but {len(titles)} title(s) were given")
    return task.elm_prompt.format(**{f: f'"{t}"' for f, t in zip(fields, titles)})


def one_shot_prompt(task: Task, titles: Sequence[str], example: OneShot | None) -> str:
    ask = task_prompt(task, titles)
    if example is None:
        return ask
    return (f"Here is an example request and a good answer.\n\nRequest: {task_prompt(task, example.titles)}\n"
            f"Answer: {example.target}\n\nAnswer the next request in the same style, without naming the movie.\n\n"
            f"Request: {ask}\nAnswer:")


def blend_prompt(title_a: str, title_b: str, weight: float) -> str:
    """A one-shot-free request for a movie that is (1 - weight) A and weight B (weight 0 is A itself)."""
    pa, pb = round(100 * (1 - weight)), round(100 * weight)
    return (f'Describe an imagined movie that is {pa}% like the movie "{title_a}" and {pb}% like the movie '
            f'"{title_b}": its premise, tone and genre, in a few sentences. Do not name either movie.')


class TextBaseline:
    """The base LLM as a text-only describer, batched through LocalTeacher."""

    def __init__(self, model: str, store=None, batch_size: int = 8, system_prompt: str = SYSTEM_PROMPT,
                 dtype: str = "float32"):
        with LOAD_LOCK:  # evaluation parts may load models in several threads at once
            self.teacher = LocalTeacher(LocalTeacherConfig(
                model=model, batch_size=batch_size, dtype=dtype, repetition_penalty=DEFAULT_REPETITION_PENALTY,
                no_repeat_ngram_size=DEFAULT_NO_REPEAT_NGRAM_SIZE, system_prompt=system_prompt), store)

    def complete(self, prompts: list[str], max_new_tokens: list[int]) -> list[str]:
        return self.teacher.complete(prompts, max_new_tokens) if prompts else []
