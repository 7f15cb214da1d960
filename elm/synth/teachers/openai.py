"""OpenAITeacher: a ChatTeacher backed by any OpenAI-compatible /chat/completions endpoint.

vLLM (`vllm serve MODEL`, http://127.0.0.1:8000/v1), Ollama (http://127.0.0.1:11434/v1), llama.cpp's server
and hosted APIs all speak this protocol. Prompts go out concurrently (bounded), each with its own seed, are
retried with exponential backoff on overload and transient failures, and come back in order:

    cfg = OpenAITeacherConfig("http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-7B-Instruct")
    with OpenAITeacher(cfg) as teacher:
        teacher.complete(["Describe ...", "Summarise ..."], [120, 80], seed=0)

Each prompt is tried at most max_retries + 1 times (the first attempt is not a retry).
"""

from __future__ import annotations

import logging
import os
import random
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from elm.synth.teachers.base import SYSTEM_PROMPT, TeacherError, TransientTeacherError

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
"""Statuses meaning "busy or briefly broken, ask again"; any other non-200 status is final."""
MAX_WAIT_S = 60.0
"""Longest single wait between attempts, whatever Retry-After or the backoff ask for."""
SNIPPET_CHARS = 200
"""How much of an unexpected response body error messages quote."""


class TeacherUnavailableError(TransientTeacherError):
    """Unreachable, timing out, or answering 429/5xx through every attempt."""


class TeacherResponseError(TransientTeacherError):
    """Answered 200, but not with a chat completion, through every attempt."""


class TeacherAuthError(TeacherError):
    """401/403: the API key is missing or was rejected."""


class TeacherNotFoundError(TeacherError):
    """404: base_url points at no chat completions endpoint, or the server does not serve the model."""


@dataclass(frozen=True)
class OpenAITeacherConfig:
    base_url: str
    """API root, e.g. "http://127.0.0.1:8000/v1"; requests go to {base_url}/chat/completions."""
    model: str
    """Model name as the server knows it (vLLM: the served model name; Ollama: e.g. "llama3.2:3b")."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key, read when the teacher is built. Unset: no Authorization
    header (local servers need none). The key itself never enters the config, settings or logs."""
    max_concurrency: int = 8
    """Requests in flight at once. Servers batch concurrent requests, so this is the throughput knob."""
    timeout_s: float = 60.0
    """Connect and read timeout per attempt, in seconds; a timeout is retried like a 503."""
    max_retries: int = 5
    """Retries after the first attempt: each prompt is sent at most max_retries + 1 times."""
    backoff_s: float = 1.0
    """Wait before the first retry; doubles per retry, with jitter, at most MAX_WAIT_S. Retry-After wins."""
    temperature: float = 0.0
    """Sampling temperature; 0 is greedy, as deterministic as the server allows."""
    top_p: float = 1.0
    """Nucleus sampling mass, in (0, 1]."""
    system_prompt: str = SYSTEM_PROMPT
    """System message sent before every prompt; "" sends none (some chat templates reject a system role)."""

    def __post_init__(self) -> None:
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ValueError(f"base_url must be an http:// or https:// URL like http://127.0.0.1:8000/v1, "
                             f"got {self.base_url!r}")
        if not self.model.strip():
            raise ValueError("model must name the model the server serves, got an empty string")
        if not self.api_key_env.strip():
            raise ValueError("api_key_env must name an environment variable (it may be unset)")
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0 (0: a single attempt), got {self.max_retries}")
        if self.backoff_s < 0:
            raise ValueError(f"backoff_s must be >= 0, got {self.backoff_s}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


class OpenAITeacher:
    """ChatTeacher over HTTP. One httpx.Client per teacher, so connections are reused; close() when done."""

    def __init__(self, cfg: OpenAITeacherConfig):
        self.cfg = cfg
        base = cfg.base_url.rstrip("/")
        self.id = f"openai:{cfg.model}@{base}"
        self.url = f"{base}/chat/completions"
        key = os.environ.get(cfg.api_key_env)
        self._has_key = bool(key)
        self._client = httpx.Client(headers={"Authorization": f"Bearer {key}"} if key else {},
                                    timeout=cfg.timeout_s,
                                    limits=httpx.Limits(max_connections=cfg.max_concurrency))
        self._jitter = random.Random()  # spreads the retries of many prompts; never touches the text

    @property
    def settings(self) -> dict:
        c = self.cfg
        return {"model": c.model, "temperature": c.temperature, "top_p": c.top_p, "system_prompt": c.system_prompt}

    def complete(self, prompts: list[str], max_new_tokens: list[int], seed: int = 0) -> list[str]:
        if len(prompts) != len(max_new_tokens):
            raise ValueError(f"{len(prompts)} prompts but {len(max_new_tokens)} max_new_tokens")
        # The caller reruns the whole chunk after a failure, so the first terminal error stops the rest:
        # queued prompts are skipped and prompts waiting to retry give up.
        stop, errors = threading.Event(), []

        def one(i: int) -> str | None:
            try:
                return self._complete_one(prompts[i], max_new_tokens[i], seed + i, stop)
            except BaseException as e:
                errors.append(e)
                stop.set()
                raise

        pool = ThreadPoolExecutor(max(1, min(self.cfg.max_concurrency, len(prompts))), "openai-teacher")
        try:
            futures = [pool.submit(one, i) for i in range(len(prompts))]
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
        if errors:
            raise errors[0]
        return [f.result() for f in futures]

    def _complete_one(self, prompt: str, max_tokens: int, seed: int, stop: threading.Event) -> str | None:
        """The stripped completion, None if stopped early; raises a TeacherError once attempts run out."""
        c = self.cfg
        system = [{"role": "system", "content": c.system_prompt}] if c.system_prompt else []
        body = {"model": c.model, "messages": system + [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens, "temperature": c.temperature, "top_p": c.top_p, "seed": seed}
        for attempt in range(c.max_retries + 1):
            if stop.is_set():
                return None
            wait_s = None
            try:
                r = self._client.post(self.url, json=body)
            except httpx.TransportError as e:  # refused, reset, timed out: the server may be restarting
                error, cause = TeacherUnavailableError, f"{type(e).__name__} {e}".strip()
            else:
                if r.status_code == 200:
                    text = _content(r)
                    if text is not None:
                        return text.strip()
                    error, cause = TeacherResponseError, f"200 without a chat completion: {_snippet(r.text)!r}"
                elif r.status_code in RETRY_STATUS:
                    error, cause = TeacherUnavailableError, f"{r.status_code} {_server_message(r)}"
                    wait_s = _retry_after(r) if r.status_code in (429, 503) else None
                else:
                    raise self._final_error(r)
            if attempt == c.max_retries:
                break
            if wait_s is None:
                wait_s = c.backoff_s * 2 ** attempt * self._jitter.uniform(0.5, 1.5)
            wait_s = min(wait_s, MAX_WAIT_S)
            log.warning("%s from %s, retry %d/%d in %.1f s", cause, self.url, attempt + 1, c.max_retries, wait_s)
            if stop.wait(wait_s):
                return None
        verb = "could not reach" if error is TeacherUnavailableError else "no chat completion from"
        raise error(f"{verb} {self.url} (model {c.model!r}) after {c.max_retries + 1} attempts: {cause}")

    def _final_error(self, r: httpx.Response) -> TeacherError:
        where, msg, env = f"{self.url} (model {self.cfg.model!r})", _server_message(r), self.cfg.api_key_env
        if r.status_code in (401, 403):
            hint = f"the key in ${env} was rejected" if self._has_key else f"set ${env} to an API key"
            return TeacherAuthError(f"{r.status_code} from {where}: {msg}; {hint}")
        if r.status_code == 404:
            return TeacherNotFoundError(f"404 from {where}: the URL or the model was not found ({msg}); "
                                        f"check base_url (usually ending in /v1) and model")
        return TeacherError(f"{r.status_code} from {where}: {msg}")

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAITeacher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _snippet(text: str) -> str:
    return text[:SNIPPET_CHARS] + ("..." if len(text) > SNIPPET_CHARS else "")


def _content(r: httpx.Response) -> str | None:
    try:
        content = r.json()["choices"][0]["message"]["content"]
    except (ValueError, LookupError, TypeError):
        return None
    return content if isinstance(content, str) else None


def _server_message(r: httpx.Response) -> str:
    """The server's own error text (OpenAI, vLLM and Ollama each put it elsewhere), else the raw body."""
    try:
        j = r.json()
    except ValueError:
        j = None
    if isinstance(j, dict):
        err = j.get("error")
        msg = err.get("message") if isinstance(err, dict) else err if isinstance(err, str) else j.get("message")
        if isinstance(msg, str) and msg:
            return _snippet(msg)
    return _snippet(r.text) or r.reason_phrase


def _retry_after(r: httpx.Response) -> float | None:
    try:
        return max(0.0, float(r.headers["retry-after"]))
    except (KeyError, ValueError):
        return None  # absent, or an HTTP date: our own backoff will do
