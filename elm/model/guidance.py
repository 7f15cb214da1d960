"""Vector guidance: decode toward what this vector says that an average vector would not.

Classifier-free guidance (Ho & Salimans 2022; for language models, Sanchez et al. 2023, "Stay on topic with
classifier-free guidance") applied to the ELM's input vector. At every step the next-token log-probabilities
given the real vector, l_v, are compared with those given a null vector, l_0 (the space's mean vector: "an
average movie", with the same prompt):

    l = l_0 + s * (l_v - l_0)

s = 1 is plain decoding. With s > 1 the words the vector makes likelier than the average movie does ("1970s",
"horror") gain, and the words every movie gets ("energetic, well-staged action") lose: the text follows the
vector more closely. Too large an s pushes toward rare tokens and garbles the text (docs/METHOD.md, "Decoding").

How the null rows run (transformers' own ``guidance_scale`` takes token ids; the ELM's input is embeddings
with soft tokens spliced in):
- greedy (PairedGuidance): the null rows are appended to the batch, and both halves are given the same guided
  scores, so they choose the same token and stay in step. One forward pass of twice the rows per token: on a
  CPU, where a small batch's step mostly reads the weights, that costs much less than a second pass.
- sampling (VectorGuidance): two halves could draw different tokens, so the null rows run in a forward pass
  of their own, with their own KV cache, fed the token each guided row chose.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers import LogitsProcessor


def guide(cond_logits: torch.Tensor, null_logits: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """null + scale * (cond - null) on log-probabilities, in float32; scale [B, 1]."""
    cond = F.log_softmax(cond_logits.float(), dim=-1)
    null = F.log_softmax(null_logits.float(), dim=-1)
    guided = null + scale * (cond - null)
    # Tokens an earlier processor banned (-inf, e.g. a repeated 4-gram) stay banned: -inf - x is -inf
    # for s > 0, but s * (-inf - (-inf)) would be NaN where both are -inf.
    return torch.where(torch.isneginf(cond), cond, guided)


def _scales(scale: float | Sequence[float], device) -> torch.Tensor:
    """[B, 1] (or [1, 1]) float32; ELM.generate has checked them."""
    return torch.as_tensor(scale, dtype=torch.float32, device=device).reshape(-1, 1)


class PairedGuidance(LogitsProcessor):
    """Greedy guidance of a doubled batch: rows [0, B) read the real vectors, rows [B, 2B) the same prompts
    with the null vectors; both halves get the guided scores of the first. ``scale``: one number or one per row."""

    def __init__(self, scale: float | Sequence[float], device=None):
        self.scale = _scales(scale, device)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        b = len(scores) // 2
        guided = guide(scores[:b], scores[b:], self.scale).to(scores.dtype)
        return torch.cat([guided, guided])


class FirstHalfStreamer:
    """A streamer of a paired batch: passes on the guided rows' tokens only (the null half repeats them)."""

    def __init__(self, streamer, rows: int):
        self.streamer, self.rows = streamer, rows

    def put(self, value) -> None:
        self.streamer.put(value[:self.rows])

    def end(self) -> None:
        self.streamer.end()


class VectorGuidance(LogitsProcessor):
    """Guides one batch of ``generate(inputs_embeds=...)``, sampled or not: ``null_embeds`` are the same prompts
    as the batch, left-padded the same way (``attention_mask``), with the null vector's soft tokens at the
    slots; ``scale`` is one number or one per row."""

    def __init__(self, lm, null_embeds: torch.Tensor, attention_mask: torch.Tensor,
                 scale: float | Sequence[float]):
        self.lm, self.scale = lm, _scales(scale, null_embeds.device)
        self.null_embeds, self.mask = null_embeds, attention_mask.long()
        self.past = None

    @torch.no_grad()
    def _null_logits(self, input_ids: torch.LongTensor) -> torch.Tensor:
        if self.past is None:  # first step: the whole null prompt
            pos = (self.mask.cumsum(-1) - 1).clamp(min=0)
            out = self.lm(inputs_embeds=self.null_embeds, attention_mask=self.mask, position_ids=pos, use_cache=True,
                          logits_to_keep=1)  # the prompt's other positions predict nothing we need
        else:  # then the token the guided rows just chose, fed to the null rows too
            self.mask = torch.cat([self.mask, self.mask.new_ones(len(self.mask), 1)], dim=1)
            pos = self.mask.sum(-1, keepdim=True) - 1
            out = self.lm(input_ids=input_ids[:, -1:], attention_mask=self.mask, position_ids=pos,
                          past_key_values=self.past, use_cache=True)
        self.past = out.past_key_values
        return out.logits[:, -1]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        return guide(scores, self._null_logits(input_ids), self.scale).to(scores.dtype)


__all__ = ["FirstHalfStreamer", "PairedGuidance", "VectorGuidance", "guide"]
