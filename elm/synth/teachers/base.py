"""What every LLM teacher shares: the chat-completion interface and its errors.

A teacher turns (task, entity facts) into target text. The template teacher (elm/synth/teachers/template.py)
composes it from the facts directly; LLM teachers receive the rendered teacher prompt
(elm/synth/catalog.py, render_teacher_prompt) as one user message and complete it:

    LocalTeacher   (elm/synth/teachers/local.py)   a transformers causal LM on this machine, batched
    OpenAITeacher  (elm/synth/teachers/openai.py)  any OpenAI-compatible chat endpoint (vLLM, Ollama, hosted)

Both implement ChatTeacher, so the synthesis stage does not care which one it drives.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

SYSTEM_PROMPT = ("You are a film expert who writes short, accurate texts about movies and viewers. "
                 "Follow the instructions exactly and write only the requested text.")
"""The system message LLM teachers send unless configured otherwise."""


class TeacherError(RuntimeError):
    """A teacher could not produce text. The message names the teacher (model, URL) and the cause."""


class TransientTeacherError(TeacherError):
    """A failure that may pass (an endpoint down or overloaded): worth retrying the stage, which resumes."""


@runtime_checkable
class ChatTeacher(Protocol):
    id: str
    """Stable identity written next to every target, e.g. "local:SmolLM2-135M-Instruct"."""

    @property
    def settings(self) -> dict:
        """Generation settings (JSON-able) that change the text: part of the artifact version and every row."""

    def complete(self, prompts: list[str], max_new_tokens: list[int], seed: int = 0) -> list[str]:
        """One completion per prompt, in order; raises TeacherError when it cannot (after any retries)."""
