"""The explore page's HTTP API (FastAPI) and the server that runs it on 127.0.0.1.

    GET  /                      the page (static/: plain HTML, CSS and JS served from the package, no CDN)
    GET  /api/status            model state (loading, ready, error), spaces, tasks, concepts, lineage
    GET  /api/map?space=        every movie of a movie space: map x, y, title, main genre, held-out flag
    GET  /api/search?q=         up to 20 movies whose title contains q
    GET  /api/movie/{id}        title, year, genres, held-out, the teacher's and the baseline's texts per task
    GET  /api/users?space=      the users of a user space, held-out flagged
    GET  /api/user/{id}         a user's top-rated movies
    POST /api/locate            a point (points.py) -> map x, y, nearest real entity, cosine, outside flag
    POST /api/ask               {"task": ..., point} -> server-sent events: queued, start, token..., done | error

Bad input is a JSON {"error": "..."} with a 4xx status before any stream starts; the map and everything but
/api/ask work while the model is still loading.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from elm.artifacts import ArtifactError, ArtifactStore
from elm.explore.catalog import Catalog, ExploreError, find_model, read_spaces
from elm.explore.engine import LIKE_TASK, Engine, Job, load_describer
from elm.explore.points import CONCEPT_RANGE, MIX_RANGE, Points
from elm.synth.catalog import MOVIE_TASKS, TASKS, USER_TASKS

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
SEARCH_LIMIT = 20


class Explorer:
    """The state behind the API: the catalog (loaded now) and the engine (its model loads in the background)."""

    def __init__(self, store: ArtifactStore, model: str | os.PathLike | None = None, *, dtype: str = "auto",
                 max_batch: int = 8, generation: dict | None = None, load=None):
        self.store, self.problem = store, None
        self.catalog = self.engine = None
        try:
            folder, train = find_model(store, model)
            self.train = train.version if train else None
            self.catalog = Catalog(store, read_spaces(folder), train)
        except ExploreError as e:
            self.problem = str(e)
            log.error("explore: %s", self.problem)
            return
        except (ArtifactError, OSError, ValueError, KeyError) as e:
            self.problem = f"cannot explore {model or 'the latest train artifact'}: {type(e).__name__}: {e}"
            log.error("explore: %s", self.problem)
            return
        self.points = Points(self.catalog)
        self.engine = Engine(load or (lambda: load_describer(folder, store, dtype)), self.catalog, self.points,
                             max_batch=max_batch, generation=generation)

    def ready(self) -> Catalog:
        if self.catalog is None:
            raise ExploreError(self.problem, 503)
        return self.catalog

    def status(self) -> dict:
        if self.catalog is None:
            return {"state": "error", "error": self.problem}
        c = self.catalog
        movie_spaces = [s.name for s in c.space_list if s.kind == "movie"]
        return {**self.engine.status(), "train": self.train, "store": str(self.store.root),
                "spaces": {"movie": movie_spaces, "user": [s.name for s in c.space_list if s.kind == "user"]},
                "tasks": {"movie": [t for t in MOVIE_TASKS if len(TASKS[t].slots) == 1], "user": USER_TASKS,
                          "user_movie": [LIKE_TASK]},
                "attributes": {s: c.attributes(s) for s in movie_spaces},
                "ranges": {"mix": MIX_RANGE, "concept": CONCEPT_RANGE},
                "evaluate": c.lineage.evaluate.version if c.lineage.evaluate else None}

    def job_points(self, body: dict) -> tuple[str, list]:
        """The task and the points of an /api/ask body, checked."""
        task = body.get("task", "summary") if isinstance(body, dict) else None
        if not isinstance(task, str) or (task not in TASKS and task != LIKE_TASK):
            raise ExploreError(f"unknown task {task!r}; known: {', '.join([*TASKS, LIKE_TASK])}")
        if task != LIKE_TASK and len(TASKS[task].slots) != 1:
            raise ExploreError(f"task {task!r} reads two movies; the explorer asks one-vector tasks (mix two "
                               "movies with {\"movies\": [a, b], \"a\": ...} instead)")
        if task == LIKE_TASK:
            if "user" not in body or "movie" not in body:
                raise ExploreError(f"task {LIKE_TASK!r} needs a user and a movie: {{\"user\": id, \"movie\": id}}")
            rest = {k: v for k, v in body.items() if k != "user"}
            return task, [self.points.point({"user": body["user"], "user_space": body.get("user_space")}),
                          self.points.point(rest)]
        p = self.points.point(body)
        if p.kind != TASKS[task].slots[0]:
            raise ExploreError(f"task {task!r} reads a {TASKS[task].slots[0]} vector, the point is a {p.kind}")
        return task, [p]


def sse(kind: str, data: dict) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def create_app(explorer: Explorer) -> FastAPI:
    app = FastAPI(title="elm explore", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(GZipMiddleware, minimum_size=2048)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    x = explorer

    @app.exception_handler(ExploreError)
    async def _bad(_, e: ExploreError):
        return JSONResponse({"error": str(e)}, status_code=e.status)

    async def body_of(request: Request) -> dict:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError as e:
            raise ExploreError(f"the request body is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise ExploreError("the request body must be a JSON object, e.g. {\"movie\": 1}")
        return body

    @app.get("/")
    async def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/api/status")
    async def status():
        return x.status()

    @app.get("/api/map")
    async def movie_map(space: str | None = None):
        c = x.ready()
        return await asyncio.to_thread(c.map, c.space(space, "movie").name)

    @app.get("/api/search")
    async def search(q: str = ""):
        c = x.ready()
        if not q.strip():
            raise ExploreError("search: type part of a title, e.g. ?q=toy story")
        hits = c.movies[c.movies["title"].str.contains(q.strip(), case=False, regex=False)]
        return [{"id": int(i), "title": t} for i, t in zip(hits.index[:SEARCH_LIMIT], hits["title"][:SEARCH_LIMIT])]

    @app.get("/api/movie/{movie_id}")
    async def movie(movie_id: int):
        return await asyncio.to_thread(x.ready().movie, movie_id)

    @app.get("/api/users")
    async def users(space: str | None = None):
        c = x.ready()
        name = c.space(space, "user").name
        return c.users(x.points.table(name).vectors.ids)

    @app.get("/api/user/{user_id}")
    async def user(user_id: int):
        return x.ready().user(user_id)

    @app.post("/api/locate")
    async def locate(request: Request):
        x.ready()
        body = await body_of(request)
        return await asyncio.to_thread(lambda: x.points.locate(x.points.point(body)))

    @app.post("/api/ask")
    async def ask(request: Request):
        x.ready()
        body = await body_of(request)
        task, points = await asyncio.to_thread(x.job_points, body)
        where = await asyncio.to_thread(lambda: [x.points.locate(p) for p in points])
        loop, events = asyncio.get_running_loop(), asyncio.Queue()
        job = Job(task, points, lambda kind, data: loop.call_soon_threadsafe(events.put_nowait, (kind, data)))
        x.engine.submit(job)

        async def stream():
            try:
                yield sse("point", {"task": task, "points": where})
                while True:
                    kind, data = await events.get()
                    yield sse(kind, data)
                    if kind in ("done", "error"):
                        return
            finally:
                job.cancelled = True  # a client that left: skip it if it has not started yet

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    return app


def serve(explorer: Explorer, port: int = 8000, host: str = "127.0.0.1") -> None:
    """Run the page until interrupted; host stays 127.0.0.1 unless a caller means otherwise."""
    import uvicorn

    uvicorn.run(create_app(explorer), host=host, port=port, log_level="warning")


__all__ = ["Explorer", "create_app", "serve"]
