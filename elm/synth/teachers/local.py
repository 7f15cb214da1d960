"""LocalTeacher: a transformers causal LM on this machine as a ChatTeacher, batched.

    teacher = LocalTeacher(LocalTeacherConfig())            # the embedded SmolLM2-135M-Instruct
    teacher.complete([render_teacher_prompt(task, facts)], [task.max_target_tokens])
    teacher.last_stats  ->  {"prompts": 1, "new_tokens": 71, "seconds": 0.9, "examples_per_s": ..., ...}

Each prompt is one user message after the system prompt, rendered with the model's chat template.
Prompts are batched with left padding (new tokens then line up at the right edge); greedy decoding of a
batch gives the same text as one prompt at a time, only faster (bench/bench_teacher.py).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from elm.model import base_lm as base_model

from elm.synth.teachers import base as teachers
from elm.synth.teachers.base import TeacherError

DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class LocalTeacherConfig:
    """Which model writes the targets, and how it decodes."""

    model: str = base_model.DEFAULT_BASE_MODEL
    """Any name elm.model.base_lm.resolve_model_path accepts: the packaged default, a local folder, a hub id."""
    batch_size: int = 16
    """Prompts per generate call (the speed knob; greedy text does not depend on it)."""
    temperature: float = 0.0
    """0 decodes greedily; above 0 samples at this temperature (same seed and batch_size: same text)."""
    top_p: float = 0.9
    """Nucleus sampling mass when temperature > 0."""
    repetition_penalty: float = 1.15
    """Damps the logits of tokens already in prompt or text. SmolLM2-135M loops on a phrase at 1.0-1.05;
    from 1.2 it starts misspelling names to dodge the penalty ("The Shawsharned Redemption")."""
    no_repeat_ngram_size: int = 0
    """Forbid repeating any n-gram of this size, prompt included (0: off). SmolLM2 tokenizes numbers digit
    by digit, so 4 forbids restating any year from the facts: it then invents years instead."""
    system_prompt: str = teachers.SYSTEM_PROMPT
    """The system message before every prompt."""
    threads: int | None = None
    """torch.set_num_threads when set (None: torch's default, all cores). On a machine shared with other
    busy processes, 1 avoids OpenMP threads stalling each other (seen: 2 threads 10x slower than 1)."""
    dtype: str = "float32"
    """Weights and activations: float32, bfloat16 or float16 (half the memory; the model stays on the CPU)."""

    def __post_init__(self) -> None:
        checks = {
            "model": isinstance(self.model, str) and self.model.strip() != "",
            "batch_size": self.batch_size >= 1,
            "temperature": self.temperature >= 0,
            "top_p": 0 < self.top_p <= 1,
            "repetition_penalty": self.repetition_penalty > 0,
            "no_repeat_ngram_size": self.no_repeat_ngram_size >= 0,
            "threads": self.threads is None or self.threads >= 1,
            "dtype": self.dtype in DTYPES,
        }
        for name, ok in checks.items():
            if not ok:
                allowed = f" (one of {', '.join(DTYPES)})" if name == "dtype" else ""
                raise ValueError(f"LocalTeacherConfig.{name}={getattr(self, name)!r} is invalid{allowed}")


class LocalTeacher:
    """ChatTeacher over a local causal LM. Loading a missing model raises base_model.ModelNotFoundError."""

    def __init__(self, cfg: LocalTeacherConfig = LocalTeacherConfig(), store=None) -> None:
        import torch

        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        self.cfg = cfg
        self.model, self.tok = base_model.load_causal_lm(cfg.model, store, dtype=getattr(torch, cfg.dtype),
                                                         padding_side="left")
        path = Path(cfg.model).expanduser()
        self.id = f"local:{path.name if path.exists() else cfg.model}"
        # Generation stops at any of these; the model's chat end token may differ from the tokenizer's eos.
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = {self.tok.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None}
        self.last_stats: dict = {}

    @property
    def settings(self) -> dict:
        s = asdict(self.cfg)
        for k in ("model", "batch_size", "threads"):  # model is in id; the other two change speed, not text
            del s[k]
        return s

    def encode(self, prompt: str) -> list[int]:
        messages = [{"role": "system", "content": self.cfg.system_prompt}, {"role": "user", "content": prompt}]
        text = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tok(text, add_special_tokens=False)["input_ids"]  # the template already has them

    def complete(self, prompts: list[str], max_new_tokens: list[int], seed: int = 0) -> list[str]:
        import torch
        from tqdm.auto import tqdm

        if len(prompts) != len(max_new_tokens):
            raise TeacherError(f"{self.id}: {len(prompts)} prompts but {len(max_new_tokens)} max_new_tokens")
        if any(n < 1 for n in max_new_tokens):
            raise TeacherError(f"{self.id}: max_new_tokens must all be >= 1, got min {min(max_new_tokens)}")
        t0 = time.perf_counter()
        ids = [self.encode(p) for p in prompts]
        limit = getattr(self.model.config, "max_position_embeddings", None)
        for i, (x, n) in enumerate(zip(ids, max_new_tokens)):
            if limit and len(x) + n > limit:
                raise TeacherError(f"{self.id}: prompt {i} has {len(x)} tokens + {n} new > context {limit}")
        # Same budget and similar length side by side: a batch decodes as long as its longest budget
        # and pads to its longest prompt, so mixing either wastes work on every row.
        order = sorted(range(len(prompts)), key=lambda i: (max_new_tokens[i], len(ids[i])))
        batches = [order[i:i + self.cfg.batch_size] for i in range(0, len(order), self.cfg.batch_size)]
        sample = self.cfg.temperature > 0
        knobs = dict(temperature=self.cfg.temperature, top_p=self.cfg.top_p) if sample else {}
        out: list[str | None] = [None] * len(prompts)
        new_tokens = 0
        for b, rows in enumerate(tqdm(batches, desc=f"{self.id} generate", unit="batch", leave=False, disable=None)):
            enc = self.tok.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt")
            torch.manual_seed(seed + b)  # the same call (prompts, seed, batch_size) samples the same text
            try:
                with torch.inference_mode():
                    gen = self.model.generate(
                        **enc, max_new_tokens=max(max_new_tokens[i] for i in rows), do_sample=sample,
                        repetition_penalty=self.cfg.repetition_penalty,
                        no_repeat_ngram_size=self.cfg.no_repeat_ngram_size,
                        pad_token_id=self.tok.pad_token_id, eos_token_id=sorted(self.eos_ids),
                        use_cache=True, **knobs)
            except (RuntimeError, ValueError) as e:  # out of memory, bad generation settings, ...
                raise TeacherError(f"{self.id}: generate failed on a batch of {len(rows)}: {e}") from e
            for row, i in zip(gen[:, enc["input_ids"].shape[1]:].tolist(), rows):
                row = row[:max_new_tokens[i]]  # the batch shared the largest budget
                end = next((k + 1 for k, t in enumerate(row) if t in self.eos_ids), len(row))
                new_tokens += end
                out[i] = self.tok.decode(row[:end], skip_special_tokens=True).strip()
        seconds = time.perf_counter() - t0
        self.last_stats = dict(prompts=len(prompts), new_tokens=new_tokens, seconds=seconds,
                               examples_per_s=len(prompts) / seconds if seconds else 0.0,
                               tokens_per_s=new_tokens / seconds if seconds else 0.0)
        return out
