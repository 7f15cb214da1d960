"""A real OpenAI-compatible chat completions server for tests: 127.0.0.1, a free port, a background thread.

    with ChatServer() as server:                                    # answers echo_answer(request)
        server.plan([Reply(429, headers={"Retry-After": "0"})])     # the next request gets this
        OpenAITeacher(OpenAITeacherConfig(server.url, "m")).complete(["a b c"], [8])
        server.requests[0].json["seed"], server.requests[0].headers.get("authorization")

`respond(request_json)` is pluggable: it returns the completion text (or a Reply, to fail one request by its
content), so the same server can front a real local model.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable

PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Reply:
    """One scripted response."""

    status: int = 200
    """HTTP status."""
    body: str | bytes | dict | list | None = None
    """Raw text/bytes, or JSON. None: the normal answer for 200, an OpenAI-style error object otherwise."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra response headers, e.g. {"Retry-After": "0"}."""
    delay_s: float = 0.0
    """Sleep this long before answering (to provoke client timeouts)."""


@dataclass(frozen=True)
class Request:
    """One request as the server received it."""

    path: str
    headers: dict[str, str]
    """Header names lower-cased."""
    json: dict | None
    """The parsed body, None if it was not JSON."""
    client: tuple[str, int]
    """(host, port) of the client's connection: the same port means a reused connection."""


def echo_answer(request: dict) -> str:
    """Deterministic in the request: the user message's last five words reversed, then [max_tokens]."""
    words = request["messages"][-1]["content"].split()
    return " ".join(reversed(words[-5:])) + f" [{request.get('max_tokens')}]"


def completion(model: str, content: str, n: int = 0) -> dict:
    """A chat.completion object as OpenAI and vLLM return it."""
    return {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": len(content.split()), "total_tokens": 0}}


def error_body(status: int, message: str) -> dict:
    return {"error": {"message": message, "type": "test_error", "code": status}}


class ChatServer:
    def __init__(self, respond: Callable[[dict], str | Reply] | None = None):
        self.respond = respond or echo_answer
        self.requests: list[Request] = []
        self.in_flight = self.max_in_flight = 0
        self._plan: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.01,), name="chat-server",
                                        daemon=True)  # short poll: close() returns at once
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def plan(self, replies: Iterable[Reply]) -> None:
        """Queue replies; each request takes the next one, whatever it asks. When empty, requests are answered."""
        with self._lock:
            self._plan.extend(replies)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ChatServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _handle(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.requests.append(request)
            n = len(self.requests)
            planned = self._plan.popleft() if self._plan else None
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if planned is not None:
                time.sleep(planned.delay_s)
            if planned is not None and (planned.body is not None or planned.status != 200):
                reply = planned
            else:
                reply = self._answer(request, n)
                time.sleep(reply.delay_s)  # respond() may return a delayed Reply too
            body = reply.body if reply.body is not None else error_body(reply.status, f"planned {reply.status}")
            if not isinstance(body, (str, bytes)):
                body = json.dumps(body)
            return reply.status, reply.headers, body.encode() if isinstance(body, str) else body
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, request: Request, n: int) -> Reply:
        if request.path != PATH:
            return Reply(404, error_body(404, f"no route for {request.path}"))
        if not isinstance(request.json, dict) or not request.json.get("messages"):
            return Reply(400, error_body(400, "body must be JSON with messages"))
        try:
            answer = self.respond(request.json)
        except Exception as e:  # a broken model is the server's problem: 500, like vLLM
            return Reply(500, error_body(500, f"{type(e).__name__}: {e}"))
        return answer if isinstance(answer, Reply) else Reply(body=completion(request.json["model"], answer, n))


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a handler still sleeping past a client timeout must not block close()
    owner: ChatServer

    def handle_error(self, request, client_address) -> None:
        pass  # clients that hang up (timeouts) are expected here; the test asserts on the client side


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do: lets tests see connection reuse
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stall
    server: _HTTPServer

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        request = Request(self.path, {k.lower(): v for k, v in self.headers.items()}, parsed, self.client_address)
        status, headers, body = self.server.owner._handle(request)
        self.send_response(status)
        for k, v in {"Content-Type": "application/json", **headers, "Content-Length": str(len(body))}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:
        pass
