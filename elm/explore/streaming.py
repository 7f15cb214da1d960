"""Token-by-token text of a batched ``generate`` call: a transformers streamer that follows every row.

transformers' TextIteratorStreamer follows one sequence; here one generate call serves several requests, so this
streamer decodes each row's new tokens as they arrive and hands each its own text delta. A row ends at its
first stop token (the pad tokens generate appends after it are ignored). A delta is held back while it ends in
an incomplete UTF-8 character (decoded as U+FFFD), as TextIteratorStreamer does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from transformers.generation.streamers import BaseStreamer


class BatchStreamer(BaseStreamer):
    """Calls ``on_text(row, delta)`` as each row of the batch grows; ``on_end()`` once generation stops."""

    def __init__(self, tokenizer, rows: int, stop_ids: Sequence[int], on_text: Callable[[int, str], None]):
        self.tokenizer, self.on_text = tokenizer, on_text
        self.stop = {int(i) for i in stop_ids if i is not None}
        self.tokens: list[list[int]] = [[] for _ in range(rows)]
        self.sent = [""] * rows
        self.done = [False] * rows

    def put(self, value) -> None:
        if value.ndim == 2:  # the prompt (empty when generation starts from embeddings): nothing to show
            return
        for row, token in enumerate(value.tolist()):
            if self.done[row]:
                continue
            if token in self.stop:
                self.done[row] = True
                continue
            self.tokens[row].append(token)
            text = self.tokenizer.decode(self.tokens[row], skip_special_tokens=True).lstrip()
            if text.endswith("\ufffd") or not text.startswith(self.sent[row]):
                continue
            if delta := text[len(self.sent[row]):]:
                self.sent[row] = text
                self.on_text(row, delta)

    def end(self) -> None:
        self.done = [True] * len(self.done)


__all__ = ["BatchStreamer"]
