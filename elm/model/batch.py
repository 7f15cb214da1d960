"""Examples -> padded tensor batches for the ELM: chat template, embedding slots, target labels.

An example is a prompt with k EMB_TOKEN placeholders, k (space name, vector) pairs in prompt order and,
for training, a target text. The prompt is wrapped in the tokenizer's chat template (system + user,
generation prompt added), split at the placeholders, and each placeholder becomes ``soft_tokens``
positions that the model later overwrites with the adapter's output (LLaVA's image tokens, done by
position instead of by a special token id, so the tokenizer needs no new tokens).

A batch is a dict that ``ELM.forward(**batch)`` takes as is:

    input_ids     LongTensor [B, L]   slot positions hold the pad id (never read: overwritten)
    attention_mask LongTensor [B, L]  1 on real tokens and slots, 0 on padding
    slot_mask     BoolTensor [B, L]   True at slot positions; soft_tokens consecutive ones per slot
    slot_vectors  dict[str, FloatTensor [n_s, dim_s]]  each space's vectors, in batch row-major slot order
    slot_space    LongTensor [n_slots]  index into config.spaces of every slot, in batch row-major order
    labels        LongTensor [B, L]   (only when examples have targets) target ids + end token, else -100

Grouping vectors by space lets each adapter run once per batch; slot_space puts the outputs back in
slot order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from elm.model.slots import EMB_TOKEN


if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from elm.model.config import ELMConfig

IGNORE_INDEX = -100
PADDING_SIDES = ("right", "left")


class ELMInputError(ValueError):
    """An example the ELM cannot read: says which example, which slot and what is wrong."""


@dataclass(frozen=True)
class Example:
    """One ELM input: a prompt with EMB_TOKEN placeholders and the vectors that fill them."""

    prompt: str
    """User message with one EMB_TOKEN per vector, e.g. "Summarize the movie <emb> in a few sentences."."""
    vectors: Sequence[tuple[str, Any]]
    """(space name, vector) for each placeholder, in prompt order; vectors are 1-D array-likes."""
    target: str | None = None
    """The answer to learn (training); None for generation."""
    slots: tuple[str, ...] | None = None
    """Slot kinds in prompt order (a task's ``slots``, e.g. ("movie", "movie")); checked against each
    space's kind when given."""


def as_example(x: Example | Sequence) -> Example:
    if isinstance(x, Example):
        return x
    if isinstance(x, dict):
        return Example(**x)
    if isinstance(x, (tuple, list)) and 2 <= len(x) <= 4:
        return Example(*x)
    raise ELMInputError(f"expected an Example or (prompt, vectors[, target[, slots]]), got {type(x).__name__}")


class ELMCollator:
    """Callable: list of examples -> batch dict (see the module docstring). Usable as a DataLoader collate_fn."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, config: ELMConfig, padding_side: str = "right",
                 max_length: int | None = None):
        if padding_side not in PADDING_SIDES:
            raise ValueError(f"padding_side must be one of {PADDING_SIDES}, got {padding_side!r}")
        self.tokenizer = tokenizer
        self.padding_side = padding_side
        self.max_length = max_length or config.max_length
        self.system_prompt = config.system_prompt
        self.soft_tokens = config.soft_tokens
        self.spaces = {s.name: (i, s) for i, s in enumerate(config.spaces)}
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.end_id = end_token_id(tokenizer, config.end_token)

    def chat_text(self, prompt: str) -> str:
        messages = [{"role": "user", "content": prompt}]
        if self.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def check_vectors(self, i: int, ex: Example) -> list[tuple[int, torch.Tensor]]:
        """(space index, float32 vector) per slot, after every check the model relies on."""
        where = f"example {i}"
        if not isinstance(ex.prompt, str):
            raise ELMInputError(f"{where}: prompt must be a string, got {type(ex.prompt).__name__}")
        k = ex.prompt.count(EMB_TOKEN)
        if k != len(ex.vectors):
            raise ELMInputError(f"{where}: the prompt has {k} {EMB_TOKEN} placeholder(s) but {len(ex.vectors)} "
                                f"vector(s) were given: {ex.prompt!r}")
        if ex.slots is not None and len(ex.slots) != k:
            raise ELMInputError(f"{where}: slots {ex.slots} name {len(ex.slots)} kind(s) for {k} placeholder(s)")
        out = []
        for j, pair in enumerate(ex.vectors):
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise ELMInputError(f"{where}, slot {j}: expected a (space name, vector) pair, got {pair!r:.80}")
            name, vec = pair
            if name not in self.spaces:
                raise ELMInputError(f"{where}, slot {j}: unknown embedding space {name!r}; "
                                    f"this ELM reads {', '.join(self.spaces)}")
            idx, space = self.spaces[name]
            where_j = f"{where}, slot {j} (space {name!r})"
            if ex.slots is not None and ex.slots[j] != space.kind:
                raise ELMInputError(f"{where_j}: the slot takes a {ex.slots[j]} vector but space {name!r} "
                                    f"holds {space.kind} vectors")
            try:
                t = torch.as_tensor(vec, dtype=torch.float32).detach().cpu()
            except (TypeError, ValueError, RuntimeError) as e:
                raise ELMInputError(f"{where_j}: not a numeric vector ({e})") from None
            if t.ndim != 1 or t.shape[0] != space.dim:
                raise ELMInputError(f"{where_j}: vector has shape {list(t.shape)}, the space expects [{space.dim}]")
            if not torch.isfinite(t).all():
                bad = (~torch.isfinite(t)).nonzero()[:, 0].tolist()
                raise ELMInputError(f"{where_j}: vector has NaN/inf at position(s) {bad[:5]}")
            out.append((idx, t))
        return out

    def __call__(self, examples: Sequence[Example | Sequence]) -> dict:
        examples = [as_example(x) for x in examples]
        if not examples:
            raise ELMInputError("cannot collate an empty list of examples")
        has_target = [ex.target is not None for ex in examples]
        if any(has_target) and not all(has_target):
            raise ELMInputError("examples in one batch must all have a target (training) or none (generation)")
        vectors = [self.check_vectors(i, ex) for i, ex in enumerate(examples)]

        segments, targets = [], []
        for i, ex in enumerate(examples):
            parts = self.chat_text(ex.prompt).split(EMB_TOKEN)
            if len(parts) != len(vectors[i]) + 1:  # the system prompt or the template added placeholders
                raise ELMInputError(f"example {i}: the templated chat has {len(parts) - 1} {EMB_TOKEN} placeholders "
                                    f"for {len(vectors[i])} vectors (is {EMB_TOKEN} in the system prompt?)")
            segments.append(parts)
            targets.append(ex.target)
        # One tokenizer call for the whole batch; segments keep their own token boundaries at the slots.
        flat = [s for parts in segments for s in parts] + [t for t in targets if t is not None]
        ids = iter(self.tokenizer(flat, add_special_tokens=False)["input_ids"])

        rows = []  # (ids, is_slot, n_prompt)
        for i, parts in enumerate(segments):
            row = list(next(ids))
            slot = [False] * len(row)
            for _ in parts[1:]:
                row += [self.pad_id] * self.soft_tokens
                slot += [True] * self.soft_tokens
                seg = next(ids)
                row += seg
                slot += [False] * len(seg)
            if len(row) > self.max_length:
                raise ELMInputError(f"example {i}: the prompt alone is {len(row)} tokens (with "
                                    f"{self.soft_tokens} per slot), over max_length {self.max_length}")
            rows.append((row, slot, len(row)))
        if all(has_target):
            for row, slot, n_prompt in rows:
                # The end token is the last thing the model must learn to say; truncation cuts it first.
                tgt = (list(next(ids)) + [self.end_id])[: self.max_length - n_prompt]
                row += tgt
                slot += [False] * len(tgt)

        width = max(len(r) for r, _, _ in rows)
        n = len(rows)
        input_ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((n, width), dtype=torch.long)
        slot_mask = torch.zeros((n, width), dtype=torch.bool)
        labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
        for b, (row, slot, n_prompt) in enumerate(rows):
            start = 0 if self.padding_side == "right" else width - len(row)
            span = slice(start, start + len(row))
            input_ids[b, span] = torch.tensor(row, dtype=torch.long)
            attention_mask[b, span] = 1
            slot_mask[b, span] = torch.tensor(slot, dtype=torch.bool)
            # By position, never by token id: SmolLM2's pad token is its end token, which is a label.
            labels[b, start + n_prompt: start + len(row)] = input_ids[b, start + n_prompt: start + len(row)]

        flat_vectors = [v for row in vectors for v in row]
        slot_space = torch.tensor([idx for idx, _ in flat_vectors], dtype=torch.long)
        names = {idx: name for name, (idx, _) in self.spaces.items()}
        slot_vectors = {names[idx]: torch.stack([t for j, t in flat_vectors if j == idx])
                        for idx in sorted(set(slot_space.tolist()))}
        batch = dict(input_ids=input_ids, attention_mask=attention_mask, slot_mask=slot_mask,
                     slot_vectors=slot_vectors, slot_space=slot_space)
        if all(has_target):
            batch["labels"] = labels
        return batch


def end_token_id(tokenizer: PreTrainedTokenizerBase, end_token: str | None) -> int:
    """The id that ends an answer: ``end_token`` if given, else the tokenizer's eos (SmolLM2: <|im_end|>)."""
    token = end_token if end_token is not None else tokenizer.eos_token
    if token is None:
        raise ValueError("the tokenizer has no eos token: set ELMConfig.end_token to the chat's end-of-turn token")
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or (tid == tokenizer.unk_token_id and token != tokenizer.unk_token):
        raise ValueError(f"end token {token!r} is not a single token of this tokenizer")
    return int(tid)

