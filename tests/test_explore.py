"""`elm explore` (elm/explore/) over a tiny random ELM: every endpoint of the real server through httpx, bad input,
the projection artifact, streaming, batching of concurrent requests, queueing while the model loads.

The ELM is untrained, so its words mean nothing; what is tested is the plumbing (which vector reaches the model,
where it lands on the map, which tokens reach which client).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import numpy as np
import pytest

from elm.explore.app import Explorer, create_app
from elm.sql import connect
from tests.uvicorn_thread import serving

SEM = "semantic_movies"
http = httpx.Client(timeout=300)
"""Generous: on a loaded 2-core machine the first map (the PCA build) and a first answer can take minutes."""


def wait_ready(url: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = http.get(f"{url}/api/status").json()
        if st["state"] != "loading":
            return st
        time.sleep(0.2)
    raise AssertionError("the model did not load")


def events(response: httpx.Response) -> list[tuple[str, dict]]:
    out = []
    for block in response.text.strip().split("\n\n"):
        kind, data = block.split("\n", 1)
        out.append((kind.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def ask(url: str, body: dict) -> list[tuple[str, dict]]:
    r = http.post(f"{url}/api/ask", json=body)
    assert r.status_code == 200, r.text
    return events(r)


def done(evs) -> dict:
    assert evs[-1][0] == "done", evs[-1]
    return evs[-1][1]


@pytest.fixture(scope="module")
def url(explore_server):
    base, _ = explore_server
    assert wait_ready(base)["state"] == "ready"
    return base


def test_status_lists_spaces_tasks_and_concepts(url):
    st = http.get(f"{url}/api/status").json()
    assert st["spaces"] == {"movie": ["semantic_movies", "behavioral_movies"], "user": ["behavioral_users"]}
    assert "summary" in st["tasks"]["movie"] and "interpolation" not in st["tasks"]["movie"]  # one-vector tasks
    assert st["tasks"]["user"] == ["user_profile"] and "genre:Comedy" in st["attributes"][SEM]
    page = http.get(url)
    assert page.status_code == 200 and "/static/explore.js" in page.text
    assert http.get(f"{url}/static/explore.js").status_code == 200


def test_the_map_is_a_projection_artifact_and_places_vectors_linearly(url, explore_server):
    _, explorer = explore_server
    m = http.get(f"{url}/api/map", params={"space": SEM}).json()
    table = explorer.points.table(SEM)
    assert m["id"] == table.vectors.ids.tolist() and len(m["x"]) == len(m["y"]) == len(m["id"])
    assert np.isfinite(m["x"]).all() and len(set(m["genre"])) > 5 and 0 < sum(m["heldout"]) < len(m["id"])
    assert m["heldout"][m["id"].index(1)] == (1 in explorer.catalog.heldout["movie"])
    # the artifact, in SQL, holds the same points
    con = connect(explorer.store)
    n, version = con.execute("select count(*), any_value(version) from projection_points_all "
                             f"where version = '{m['projection'].split('/')[1]}'").fetchone()
    assert n == len(m["id"])
    # a movie's own vector lands on its point; the mix of two lands on the segment between them (PCA is linear)
    i, j = m["id"].index(1), m["id"].index(2571)
    own = http.post(f"{url}/api/locate", json={"movie": 1}).json()
    assert (own["x"], own["y"]) == pytest.approx((m["x"][i], m["y"][i]), abs=1e-3)
    assert own["nearest_id"] == 1 and own["nearest_cosine"] == pytest.approx(1, abs=1e-3) and not own["outside"]
    mid = http.post(f"{url}/api/locate", json={"movies": [1, 2571], "a": 0.25}).json()
    assert (mid["x"], mid["y"]) == pytest.approx((0.75 * m["x"][i] + 0.25 * m["x"][j],
                                                  0.75 * m["y"][i] + 0.25 * m["y"][j]), abs=1e-3)
    assert mid["nearest_cosine"] < 1
    other = http.get(f"{url}/api/map", params={"space": "behavioral_movies"}).json()
    assert other["projection"] != m["projection"] and other["x"] != m["x"]


def test_concepts_move_the_point_towards_the_attribute(url):
    probs = [http.post(f"{url}/api/locate", json={"movie": 1, "attribute": "genre:Horror", "a": a}).json()
             ["attribute_probability"] for a in (-2, 0, 2)]
    assert probs[0] < probs[1] < probs[2]


def test_search_movie_users(url):
    hits = http.get(f"{url}/api/search", params={"q": "toy story"}).json()
    assert {"id": 1, "title": "Toy Story (1995)"} in hits and all("toy story" in h["title"].lower() for h in hits)
    movie = http.get(f"{url}/api/movie/1").json()
    assert movie["title"] == "Toy Story (1995)" and "Animation" in movie["genres"]
    users = http.get(f"{url}/api/users").json()
    assert len(users) > 500 and any(u["heldout"] for u in users) and not all(u["heldout"] for u in users)
    user = http.get(f"{url}/api/user/{users[0]['id']}").json()
    ratings = [t["rating"] for t in user["top"]]
    assert len(ratings) == 10 and ratings == sorted(ratings, reverse=True) and all(t["title"] for t in user["top"])


@pytest.mark.parametrize("method,path,body,status,words", [
    ("get", "/api/movie/999999999", None, 404, "unknown movieId 999999999"),
    ("get", "/api/user/999999", None, 404, "unknown userId 999999"),
    ("get", "/api/map?space=nope", None, 404, "unknown movie space 'nope'"),
    ("get", "/api/search?q=", None, 400, "type part of a title"),
    ("post", "/api/locate", {"movie": 999999999}, 404, "movie: unknown movieId 999999999"),
    ("post", "/api/locate", {"vector": [0.1] * 7}, 400, "dimension 7, space 'semantic_movies' expects 384"),
    ("post", "/api/locate", "NAN", 400, "NaN/inf at position(s) [3]"),
    ("post", "/api/locate", {"movies": [1, 2], "a": 1.5}, 400, "a = 1.5 is out of range"),
    ("post", "/api/locate", {"movie": 1, "attribute": "genre:Comedy", "a": 9}, 400, "a = 9 is out of range"),
    ("post", "/api/locate", {"movie": 1, "attribute": "genre:Nope", "a": 1}, 404, "no concept direction"),
    ("post", "/api/locate", {"movies": [1]}, 400, "give two movie ids"),
    ("post", "/api/locate", {"movie": "x"}, 400, "'x' is not an integer id"),
    ("post", "/api/locate", "[1, 2", 400, "not JSON"),
    ("post", "/api/ask", {"task": "nope", "movie": 1}, 400, "unknown task 'nope'"),
    ("post", "/api/ask", {"task": "interpolation", "movie": 1}, 400, "reads two movies"),
    ("post", "/api/ask", {"task": "user_profile", "movie": 1}, 400, "reads a user vector, the point is a movie"),
    ("post", "/api/ask", {"task": "summary", "movie": 999999999}, 404, "unknown movieId"),
    ("post", "/api/ask", {"task": "summary", "vector": [1.0] * 3}, 400, "dimension 3"),
])
def test_bad_input_gets_a_clear_error(url, method, path, body, status, words):
    if body == "NAN":  # JSON with a literal NaN, as a careless client may send
        r = http.post(f"{url}{path}", content="{\"vector\": [0, 0, 0, NaN" + ", 0" * 380 + "]}")
    elif isinstance(body, str):
        r = http.post(f"{url}{path}", content=body)
    else:
        r = http.request(method, f"{url}{path}", json=body)
    assert r.status_code == status and words in r.json()["error"], r.text


def test_an_answer_streams_token_by_token(url):
    evs = ask(url, {"task": "summary", "movie": 1})
    kinds = [k for k, _ in evs]
    assert kinds[0] == "point" and kinds[-1] == "done" and kinds.count("token") >= 2
    final = done(evs)
    streamed = "".join(d["text"] for k, d in evs if k == "token")
    assert final["text"] and streamed.strip() == final["text"]
    assert final["slots"][0]["nearest_id"] == 1 and evs[0][1]["points"][0]["nearest_title"] == "Toy Story (1995)"
    # the text depends on the vector; the same point gives the same text
    assert done(ask(url, {"task": "summary", "movie": 2571}))["text"] != final["text"]
    assert done(ask(url, {"task": "summary", "movie": 1}))["text"] == final["text"]


def test_mixes_concepts_users_and_a_user_with_a_movie(url):
    mix = ask(url, {"task": "summary", "movies": [1, 2571], "a": 0.5})
    assert done(mix)["slots"][0]["entity_id"] is None and mix[0][1]["points"][0]["x"] is not None
    concept = done(ask(url, {"task": "summary", "movie": 1, "attribute": "genre:Horror", "a": 3}))
    assert 0 <= concept["attribute_score"] <= 1
    users = http.get(f"{url}/api/users").json()
    profile = done(ask(url, {"task": "user_profile", "user": users[0]["id"]}))
    assert profile["slots"][0]["space"] == "behavioral_users" and profile["slots"][0]["nearest_id"] == users[0]["id"]
    like = done(ask(url, {"task": "user_would_like", "user": users[0]["id"], "movie": 1}))
    assert [s["space"] for s in like["slots"]] == ["behavioral_users", "semantic_movies"] and like["text"]


def test_eight_concurrent_clients_are_batched_and_none_is_lost(url, explore_server):
    _, explorer = explore_server
    movies = [1, 2, 260, 318, 356, 480, 593, 2571]
    alone = {m: done(ask(url, {"task": "summary", "movie": m}))["text"] for m in movies}
    before = len(explorer.engine.batches)

    async def fire():
        async with httpx.AsyncClient(timeout=120) as client:
            rs = await asyncio.gather(*(client.post(f"{url}/api/ask", json={"task": "summary", "movie": m})
                                        for m in movies))
        return [events(r) for r in rs]

    results = asyncio.run(fire())
    assert [done(evs)["text"] for evs in results] == [alone[m] for m in movies]  # each its own text, in batches
    sizes = explorer.engine.batches[before:]
    assert sum(sizes) == 8 and max(sizes) > 1, sizes
    assert any(k == "queued" for evs in results for k, _ in evs) or len(sizes) == 1


def test_requests_wait_while_the_model_loads(explore_server, tiny_elm):
    """A request sent before the model is ready is queued and answered once it is, not dropped."""
    _, ready = explore_server
    store, folder = tiny_elm
    gate = threading.Event()

    def slow_load():
        gate.wait(30)
        return ready.engine.describer

    explorer = Explorer(store, folder, generation=ready.engine.generation, load=slow_load)
    try:
        with serving(create_app(explorer)) as base:
            assert http.get(f"{base}/api/status").json()["state"] == "loading"
            assert len(http.get(f"{base}/api/map").json()["id"]) > 9000  # the map does not wait for the model
            out = {}
            t = threading.Thread(target=lambda: out.setdefault("evs", ask(base, {"task": "summary", "movie": 1})))
            t.start()
            deadline = time.monotonic() + 30
            while explorer.engine.status()["queued"] < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert explorer.engine.status()["queued"] == 1 and t.is_alive()  # waiting in the queue, not refused
            gate.set()
            t.join(60)
    finally:
        gate.set()
    evs = out["evs"]
    assert ("queued", {"ahead": 0, "loading": True}) in evs and done(evs)["text"]


def test_no_trained_model_says_run_make_run_first(tmp_path):
    from elm.artifacts import ArtifactStore

    explorer = Explorer(ArtifactStore(tmp_path / "empty"))
    st = explorer.status()
    assert st["state"] == "error" and "run `make run` first" in st["error"]
    with serving(create_app(explorer)) as base:
        r = http.get(f"{base}/api/map")
        page = http.get(base)
    assert r.status_code == 503 and "run `make run` first" in r.json()["error"]
    assert page.status_code == 200  # the page itself loads and shows the message from /api/status


def test_the_map_path_imports_no_torch_and_names_agree():
    """The server answers the map while torch loads in the background: its modules must not import torch."""
    import subprocess
    import sys

    from elm.explore import catalog
    from elm.model.elm import CONFIG_FILE
    from elm.serve.loading import TRAIN_ELM_DIR

    assert (catalog.CONFIG_FILE, catalog.MODEL_DIR) == (CONFIG_FILE, TRAIN_ELM_DIR)
    code = "import sys, elm.explore.app; print(sorted(m for m in ('torch', 'transformers', 'sklearn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
