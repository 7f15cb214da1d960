"""The model behind the page: loaded in the background (the map never waits for it), and one worker thread that
takes queued requests in arrival order, batches those waiting into the same generate call, and streams each
request's text back token by token.

A request is never dropped: while the model loads or generates, new requests wait in the queue and are told
how many are ahead of them. The worker takes the oldest request, then every other one already waiting (up to
``max_batch``, after a short ``window_s`` for requests fired together), and runs one generate call per group
that shares a prompt shape (the same spaces; a free-form prompt apart from catalog tasks).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from elm.explore.catalog import Catalog, ExploreError
from elm.explore.points import Point, Points
from elm.synth.catalog import get_task, render_elm_prompt

log = logging.getLogger(__name__)

LIKE_TASK = "user_would_like"
LIKE_PROMPT = "Would the user <emb> enjoy the movie <emb>? Say why in a few sentences."
"""A free-form prompt (the ELM was not trained on it): a user's vector and a movie's, in that order."""
LIKE_TOKENS = 96


@dataclass
class Job:
    task: str
    points: list[Point]
    emit: Callable[[str, dict], None]
    """Called from the worker thread with ("queued" | "start" | "token" | "done" | "error", data)."""
    created: float = field(default_factory=time.monotonic)
    cancelled: bool = False


class Engine:
    """A Describer loaded in the background and a worker that serves Jobs in batches."""

    def __init__(self, load: Callable[[], object], catalog: Catalog, points: Points, *, max_batch: int = 8,
                 window_s: float = 0.1, generation: dict | None = None):
        self.catalog, self.points = catalog, points
        self.max_batch, self.window_s = max_batch, window_s
        self.generation = dict(generation or {})
        self.describer = None
        self.state, self.error = "loading", None
        self.busy = False
        self.batches: list[int] = []
        """The size of every batch run so far (the bench and the tests read it)."""
        self._queue: queue.Queue[Job] = queue.Queue()
        self._encoder = None
        self._started = time.monotonic()
        threading.Thread(target=self._serve, args=(load,), name="elm-explore-engine", daemon=True).start()

    # -- the page's side ---------------------------------------------------------------------------

    def status(self) -> dict:
        return {"state": self.state, "error": self.error, "queued": self._queue.qsize(), "busy": self.busy,
                "batches": len(self.batches), "recent_batch_sizes": self.batches[-20:]}

    def submit(self, job: Job) -> None:
        if self.state == "error":
            raise ExploreError(f"the model is not available: {self.error}", 503)
        ahead = self._queue.qsize() + (1 if self.busy else 0)
        self._queue.put(job)
        if self.state == "loading" or ahead:
            job.emit("queued", {"ahead": ahead, "loading": self.state == "loading"})

    # -- the worker --------------------------------------------------------------------------------

    def _serve(self, load: Callable[[], object]) -> None:
        try:
            self.describer = load()
        except Exception as e:  # noqa: BLE001 - any load failure becomes the page's message
            self.state, self.error = "error", f"{type(e).__name__}: {e}"
            log.error("explore: the model did not load: %s", self.error)
            while True:  # answer whatever was queued meanwhile
                self._queue.get().emit("error", {"message": f"the model is not available: {self.error}"})
        self.state = "ready"
        log.info("explore: model ready after %.1f s", time.monotonic() - self._started)
        while True:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self.window_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            batch = [j for j in batch if not j.cancelled]
            if not batch:
                continue
            self.busy = True
            try:
                self._run(batch)
            finally:
                self.busy = False

    def _run(self, batch: list[Job]) -> None:
        self.batches.append(len(batch))
        groups: dict[tuple, list[Job]] = {}
        for job in batch:
            groups.setdefault((job.task == LIKE_TASK, tuple(p.space for p in job.points)), []).append(job)
        for (free, spaces), jobs in groups.items():
            for job in jobs:
                job.emit("start", {"batch": len(batch), "waited_s": round(time.monotonic() - job.created, 3)})
            try:
                self._generate(jobs, free, list(spaces))
            except Exception as e:  # noqa: BLE001 - the page gets the message; the worker goes on
                log.exception("explore: generation failed")
                for job in jobs:
                    job.emit("error", {"message": f"generation failed: {type(e).__name__}: {e}"})

    def _generate(self, jobs: list[Job], free: bool, spaces: list[str]) -> None:
        from elm.explore.streaming import BatchStreamer  # transformers: imported by the worker, not the map

        d = self.describer
        # ELM.generate orders a batch by prompt length (a stable sort); sorted so here, its rows are ours.
        if not free:
            jobs.sort(key=lambda j: len(render_elm_prompt(get_task(j.task))))
        stop = [d.elm.end_id, d.elm.tokenizer.eos_token_id]
        streamer = BatchStreamer(d.elm.tokenizer, len(jobs), stop, lambda row, text: jobs[row].emit("token", {"text": text}))
        settings = ({"max_new_tokens": LIKE_TOKENS} if free else {}) | self.generation | {
            "batch_size": len(jobs), "streamer": streamer}
        items = [tuple(p.vector for p in j.points) if len(j.points) > 1 else j.points[0].vector for j in jobs]
        if free:
            answers = d.describe_many(None, items, prompt=LIKE_PROMPT, spaces=spaces, **settings)
        else:
            answers = d.describe_requests([(j.task, x) for j, x in zip(jobs, items)], spaces=spaces[0], **settings)
        scores = self._attribute_scores(jobs, [a.text for a in answers])
        for job, answer, score in zip(jobs, answers, scores):
            job.emit("done", {"text": answer.text, "task": job.task, "prompt": answer.prompt,
                              "slots": [s.to_dict() for s in answer.slots], "attribute_score": score,
                              "total_s": round(time.monotonic() - job.created, 3)})

    def _attribute_scores(self, jobs: list[Job], texts: list[str]) -> list[float | None]:
        """The probability of the concept in the text: the concept's classifier in the semantic space applied
        to the encoded text, as the evaluation scores CAV moves (None where no concept, or no semantic space)."""
        want = [i for i, j in enumerate(jobs) if j.points[-1].attribute and self._semantic(j.points[-1].space)]
        out: list[float | None] = [None] * len(jobs)
        if not want:
            return out
        from elm.metrics.semantic_consistency import encode_texts

        if self._encoder is None:
            from elm.embed.semantic import DEFAULT_ENCODER, load_encoder

            space = jobs[want[0]].points[-1].space
            art = self.catalog.store.resolve(*self.catalog.spaces[space].source.split("/", 1))
            self._encoder = load_encoder(art.manifest["config"].get("encoder", DEFAULT_ENCODER))
        encoded = encode_texts([texts[i] for i in want], self._encoder)
        for i, e in zip(want, encoded):
            p = jobs[i].points[-1]
            out[i] = round(float(self.points.cav(p.space, p.attribute).probability(np.asarray(e))), 4)
        return out

    def _semantic(self, space: str) -> bool:
        return self.catalog.spaces[space].source.startswith("semantic/")


def load_describer(model: str | os.PathLike | None, store, dtype: str = "auto"):
    """The Describer of a saved ELM (a folder, "train=VERSION", a version, None = latest), in the inference dtype."""
    import torch
    from transformers.utils.logging import disable_progress_bar

    from elm.model.base_lm import inference_dtype
    from elm.serve.describe import Describer

    disable_progress_bar()  # a "Loading weights" bar in the server's log says nothing the page does not
    d = Describer(model, store)
    d.elm.to(getattr(torch, inference_dtype(dtype)))
    return d


__all__ = ["Engine", "Job", "LIKE_TASK", "load_describer"]
