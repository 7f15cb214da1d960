"""`elm explore` under load: 8 requests fired at once against requests made one at a time, in the same run.

    .venv/bin/python bench/bench_explore.py [--artifacts DIR] [--train VERSION] [--clients 8] [--alone 3]
                                            [--task summary]

Starts the real `elm explore` command (a subprocess on a free port) on a store after `make run`, and reports:
  page usable       seconds from the command's start until /api/map answered (the map does not wait for the model)
  model ready       seconds until /api/status says the model is loaded
  alone             --alone movies asked one at a time: time to the first streamed token and to the full
                    answer (median; the first request pays for warming up, the median leaves it out); the baseline
  together          --clients requests fired at once: per-request first token and full answer (median, max), as
                    ratios against alone; all must complete (none lost); the batch sizes the server ran
  throughput        the wall time of all requests fired together against the sum of the alone times
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

MOVIES = [1, 260, 318, 356, 480, 593, 1196, 2571, 2959, 4993, 58559, 79132]


async def ask(client: httpx.AsyncClient, url: str, body: dict) -> dict:
    t0 = time.perf_counter()
    first, kinds, final = None, [], None
    async with client.stream("POST", f"{url}/api/ask", json=body) as r:
        r.raise_for_status()
        buf = ""
        async for chunk in r.aiter_text():
            buf += chunk
            while "\n\n" in buf:
                block, buf = buf.split("\n\n", 1)
                kind = block.split("\n", 1)[0].removeprefix("event: ")
                kinds.append(kind)
                if kind == "token" and first is None:
                    first = time.perf_counter() - t0
                if kind in ("done", "error"):
                    final = json.loads(block.split("\n", 1)[1].removeprefix("data: "))
    return {"first": first, "full": time.perf_counter() - t0, "ok": kinds[-1] == "done", "final": final}


async def run(url: str, task: str, movies: list[int], n_alone: int) -> tuple[list[dict], list[dict], float]:
    async with httpx.AsyncClient(timeout=1800) as client:
        alone = [await ask(client, url, {"task": task, "movie": m}) for m in movies[:n_alone]]
        t0 = time.perf_counter()
        together = await asyncio.gather(*(ask(client, url, {"task": task, "movie": m}) for m in movies))
        return alone, list(together), time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifacts", default=os.environ.get("ELM_ARTIFACTS_DIR", "artifacts"))
    p.add_argument("--train", default=None)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--alone", type=int, default=3)
    p.add_argument("--task", default="summary")
    a = p.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    cmd = [str(Path(sys.executable).with_name("elm")), "explore", "--port", str(port), "--artifacts", a.artifacts,
           *(["--train", a.train] if a.train else [])]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    try:
        usable = ready = None
        while ready is None and time.perf_counter() - t0 < 1200:
            if proc.poll() is not None:
                sys.exit(f"elm explore exited with status {proc.returncode}")
            try:
                if usable is None and httpx.get(f"{url}/api/map", timeout=30).status_code == 200:
                    usable = time.perf_counter() - t0
                    print(f"page usable after {usable:.1f} s", flush=True)
                st = httpx.get(f"{url}/api/status", timeout=5).json()
                if st["state"] == "error":
                    sys.exit(f"the model did not load: {st['error']}")
                if st["state"] == "ready":
                    ready = time.perf_counter() - t0
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        movies = (MOVIES * 4)[:a.clients]
        alone, together, wall = asyncio.run(run(url, a.task, movies, a.alone))
        batches = httpx.get(f"{url}/api/status").json()["recent_batch_sizes"][len(alone):]
    finally:
        proc.terminate()
        proc.wait(30)
    med = lambda xs: statistics.median(xs)  # noqa: E731
    base_first, base_full = med([r["first"] for r in alone]), med([r["full"] for r in alone])
    done = sum(r["ok"] for r in together)
    print(f"load: {os.getloadavg()[0]:.2f} (1-min average; other processes share these CPUs)")
    print(f"page usable after {usable:.1f} s; model ready after {ready:.1f} s")
    print(f"alone (baseline, {a.task}, median of {len(alone)}): first token {base_first:.2f} s, full answer {base_full:.2f} s")
    for name, key, base in (("first token", "first", base_first), ("full answer", "full", base_full)):
        xs = [r[key] for r in together]
        print(f"{a.clients} together, {name}: median {med(xs) / base:.2f}x, max {max(xs) / base:.2f}x of alone")
    print(f"completed {done}/{a.clients} ; batch sizes the server ran: {batches}")
    print(f"throughput: {a.clients} together took {wall:.1f} s, {wall / (a.clients * base_full):.2f}x "
          f"{a.clients} x the alone median")


if __name__ == "__main__":
    main()
