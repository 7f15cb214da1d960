"""The teacher backends, by name: who writes the training targets.

    template  elm/synth/teachers/template.py  targets composed from metadata (no model; the embedded default)
    local     elm/synth/teachers/local.py     a transformers causal LM on this machine
    openai    elm/synth/teachers/openai.py    any OpenAI-compatible chat endpoint (vLLM, Ollama, hosted)

Adding a backend: one file here with its settings dataclass and teacher class (a ChatTeacher, see
base.py, or a facts teacher like the template one), and one line in ``BACKENDS``. Its settings live in
the ``SynthesisConfig`` field named after it (``SynthesisConfig.local``, ``SynthesisConfig.openai``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Backend:
    name: str
    build: Callable[[Any, Any], Any]
    """(settings, artifact store) -> teacher. The settings are None for a backend without any."""
    ident: Callable[[Any], str]
    """settings -> the teacher id written next to every target (its model and where it runs)."""
    needs_settings: bool = False
    """True when the backend cannot run on defaults (an endpoint has no default URL)."""


def _template(settings, store):
    from elm.synth.teachers.template import TemplateTeacher

    return TemplateTeacher()


def _local(settings, store):
    from elm.synth.teachers.local import LocalTeacher

    return LocalTeacher(settings, store)


def _openai(settings, store):
    from elm.synth.teachers.openai import OpenAITeacher

    return OpenAITeacher(settings)


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("local", _local, lambda s: f"local:{Path(s.model).name}"),
    Backend("openai", _openai, lambda s: f"openai:{s.model}@{s.base_url}", needs_settings=True),
    Backend("template", _template, lambda s: "template"),
)}


def get_backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown teacher {name!r}; known: {', '.join(BACKENDS)}") from None
