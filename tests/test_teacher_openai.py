"""OpenAITeacher against a real HTTP server on 127.0.0.1 (tests/chat_server.py), scripted per test."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import pytest

from elm.synth.teachers.openai import (OpenAITeacher, OpenAITeacherConfig, TeacherAuthError, TeacherNotFoundError,
                                TeacherResponseError, TeacherUnavailableError)
from elm.synth.teachers.base import SYSTEM_PROMPT, ChatTeacher, TeacherError
from tests.chat_server import ChatServer, Reply, echo_answer

KEY_ENV = "ELM_TEST_OPENAI_KEY"


@pytest.fixture
def server():
    with ChatServer() as s:
        yield s


@pytest.fixture
def make_teacher(server, monkeypatch):
    """Teachers pointed at the server, with fast retries; closed at teardown."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    made = []

    def make(**kw) -> OpenAITeacher:
        kw = {"base_url": server.url, "model": "test-model", "api_key_env": KEY_ENV, "max_retries": 2,
              "backoff_s": 0.01, "timeout_s": 5.0, **kw}
        made.append(OpenAITeacher(OpenAITeacherConfig(**kw)))
        return made[-1]

    yield make
    for t in made:
        t.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_is_a_chat_teacher_with_id_and_settings(make_teacher, server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-secret-123")
    t = make_teacher(base_url=server.url + "/", temperature=0.5)
    assert isinstance(t, ChatTeacher)
    assert t.id == f"openai:test-model@{server.url}"
    assert t.settings == {"model": "test-model", "temperature": 0.5, "top_p": 1.0, "system_prompt": SYSTEM_PROMPT}
    assert "sk-secret" not in json.dumps(t.settings) + t.id + repr(t.cfg)


def test_request_body_and_stripped_answer(make_teacher, server):
    server.respond = lambda req: f"  {echo_answer(req)} \n"
    t = make_teacher(temperature=0.3, top_p=0.9, system_prompt="Be brief.")
    assert t.complete(["say hello there", "one two three four five six"], [5, 7], seed=3) == \
        ["there hello say [5]", "six five four three two [7]"]
    first = next(r for r in server.requests if r.json["max_tokens"] == 5)
    assert first.path == "/v1/chat/completions"
    assert first.json == {"model": "test-model", "max_tokens": 5, "temperature": 0.3, "top_p": 0.9, "seed": 3,
                          "messages": [{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": "say hello there"}]}
    second = next(r for r in server.requests if r.json["max_tokens"] == 7)
    assert second.json["seed"] == 4


def test_empty_system_prompt_sends_only_the_user_message(make_teacher, server):
    make_teacher(system_prompt="").complete(["hi"], [3])
    assert server.requests[0].json["messages"] == [{"role": "user", "content": "hi"}]


def test_order_kept_under_bounded_concurrency(make_teacher, server):
    def slow_echo(req):  # earlier prompts answer later, so completion order is the reverse of prompt order
        time.sleep(0.002 * (20 - req["seed"]))
        return echo_answer(req)

    server.respond = slow_echo
    prompts = [f"describe movie {i} in words w{i}" for i in range(20)]
    out = make_teacher(max_concurrency=4).complete(prompts, [10 + i for i in range(20)], seed=0)
    assert out == [f"w{i} words in {i} movie [{10 + i}]" for i in range(20)]
    assert {r.json["messages"][-1]["content"]: r.json["seed"] for r in server.requests} == \
        {p: i for i, p in enumerate(prompts)}
    assert 2 <= server.max_in_flight <= 4


def test_connection_is_reused(make_teacher, server):
    t = make_teacher(max_concurrency=1)
    t.complete(["a b", "c d"], [1, 1])
    t.complete(["e f"], [1])
    assert len({r.client for r in server.requests}) == 1


def test_empty_and_mismatched_inputs(make_teacher, server):
    t = make_teacher()
    assert t.complete([], []) == []
    with pytest.raises(ValueError, match="2 prompts but 1 max_new_tokens"):
        t.complete(["a", "b"], [1])
    assert server.requests == []


def test_429_honours_retry_after_then_succeeds(make_teacher, server, caplog):
    server.plan([Reply(429, headers={"Retry-After": "0"})])
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="elm.synth.teachers.openai"):
        # backoff_s=10: finishing fast proves Retry-After replaced the backoff
        assert make_teacher(backoff_s=10.0).complete(["x y"], [2]) == ["y x [2]"]
    assert time.monotonic() - t0 < 2
    assert len(server.requests) == 2
    assert server.requests[0].json == server.requests[1].json  # same seed on the retry
    assert "429" in caplog.text and "retry 1/2 in 0.0 s" in caplog.text and server.url in caplog.text


def test_503_retry_after_is_waited_for(make_teacher, server):
    server.plan([Reply(503, headers={"Retry-After": "0.3"})])
    t0 = time.monotonic()
    assert make_teacher(backoff_s=0.0).complete(["x y"], [2]) == ["y x [2]"]
    assert time.monotonic() - t0 >= 0.3


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_then_success(make_teacher, server, status):
    server.plan([Reply(status), Reply(status, "upstream exploded")])
    assert make_teacher().complete(["p q r"], [4]) == ["r q p [4]"]
    assert len(server.requests) == 3


def test_5xx_every_time_is_unavailable(make_teacher, server):
    server.plan([Reply(503, {"object": "error", "message": "engine overloaded"})] * 10)
    with pytest.raises(TeacherUnavailableError, match=r"after 3 attempts: 503 engine overloaded"):
        make_teacher(max_retries=2).complete(["a"], [1])
    assert len(server.requests) == 3


@pytest.mark.parametrize("status", [401, 403])
def test_auth_error_is_not_retried(make_teacher, server, status):
    server.plan([Reply(status, {"error": {"message": "Incorrect API key provided"}})])
    with pytest.raises(TeacherAuthError, match=f"{status} from .*Incorrect API key provided; set \\${KEY_ENV}"):
        make_teacher().complete(["a"], [1])
    assert len(server.requests) == 1


def test_api_key_sent_as_bearer_only_when_set(make_teacher, server, monkeypatch, caplog):
    make_teacher().complete(["a"], [1])
    assert "authorization" not in server.requests[-1].headers
    monkeypatch.setenv(KEY_ENV, "sk-test-123")
    server.plan([Reply(429, headers={"Retry-After": "0"}), Reply(401)])
    t = make_teacher()
    with caplog.at_level(logging.DEBUG), \
            pytest.raises(TeacherAuthError, match=f"key in \\${KEY_ENV} was rejected") as e:
        t.complete(["a"], [1])
    assert server.requests[-1].headers["authorization"] == "Bearer sk-test-123"
    assert "sk-test-123" not in str(e.value) + caplog.text


def test_wrong_base_url_is_not_found(make_teacher, server):
    with pytest.raises(TeacherNotFoundError, match=r"404 from http://127\.0\.0\.1:\d+/chat/completions .*"
                                                   r"not found \(no route for /chat/completions\)"):
        make_teacher(base_url=server.url.removesuffix("/v1")).complete(["a"], [1])
    assert len(server.requests) == 1


def test_unknown_model_is_not_found_with_server_message(make_teacher, server):
    server.plan([Reply(404, {"object": "error", "message": "The model `nope` does not exist.", "code": 404})])
    with pytest.raises(TeacherNotFoundError, match="model 'nope'.*The model `nope` does not exist"):
        make_teacher(model="nope").complete(["a"], [1])
    assert len(server.requests) == 1


def test_other_4xx_is_a_plain_teacher_error(make_teacher, server):
    server.plan([Reply(400, "max_tokens is too large: 99999 > 2048 " + "x" * 500)])
    with pytest.raises(TeacherError, match=r"400 from .*max_tokens is too large: 99999 > 2048 x+\.\.\.$") as e:
        make_teacher().complete(["a"], [99999])
    assert type(e.value) is TeacherError
    assert len(str(e.value)) < 400
    assert len(server.requests) == 1


@pytest.mark.parametrize("body", ["<html>Bad gateway</html>", {"choices": []}, {"detail": "ok"},
                                  {"choices": [{"message": {"role": "assistant", "content": None}}]}])
def test_garbage_200_retried_then_response_error(make_teacher, server, body):
    server.plan([Reply(200, body)] * 10)
    with pytest.raises(TeacherResponseError, match="no chat completion from .* after 4 attempts: 200 without"):
        make_teacher(max_retries=3).complete(["a"], [1])
    assert len(server.requests) == 4  # max_retries counts retries: 1 attempt + 3 retries


def test_garbage_once_then_success(make_teacher, server):
    server.plan([Reply(200, "not json")])
    assert make_teacher().complete(["a b"], [1]) == ["b a [1]"]
    assert len(server.requests) == 2


def test_zero_retries_means_one_attempt(make_teacher, server):
    server.plan([Reply(500)])
    with pytest.raises(TeacherUnavailableError, match="after 1 attempts"):
        make_teacher(max_retries=0).complete(["a"], [1])
    assert len(server.requests) == 1


def test_endpoint_down_is_unavailable_quickly(make_teacher):
    url = f"http://127.0.0.1:{free_port()}/v1"
    t0 = time.monotonic()
    with pytest.raises(TeacherUnavailableError,
                       match=f"could not reach {url}/chat/completions \\(model 'test-model'\\) after 4 attempts: "
                             "ConnectError"):
        make_teacher(base_url=url, max_retries=3).complete(["a", "b", "c"], [1, 1, 1])
    assert time.monotonic() - t0 < 2


def test_timeout_is_retried_then_unavailable(make_teacher, server):
    server.plan([Reply(delay_s=0.5)] * 2)
    with pytest.raises(TeacherUnavailableError, match="after 2 attempts: ReadTimeout"):
        make_teacher(timeout_s=0.2, max_retries=1).complete(["a"], [1])
    assert len(server.requests) == 2


def test_timeout_then_success(make_teacher, server):
    server.plan([Reply(delay_s=0.5)])
    assert make_teacher(timeout_s=0.2).complete(["a b"], [1]) == ["b a [1]"]
    assert len(server.requests) == 2


def test_terminal_failure_skips_queued_prompts(make_teacher, server):
    server.plan([Reply(401)])
    with pytest.raises(TeacherAuthError):
        make_teacher(max_concurrency=1).complete([f"p{i}" for i in range(10)], [1] * 10)
    assert len(server.requests) == 1


def test_terminal_failure_stops_prompts_waiting_to_retry(make_teacher, server):
    """p0 is told to come back in 5 s while p1 fails for good: complete raises at once, p0 gives up."""
    first_seen = threading.Event()

    def respond(req):
        prompt = req["messages"][-1]["content"]
        if prompt == "p0":
            first_seen.set()
            return Reply(503, headers={"Retry-After": "5"})
        first_seen.wait(2)  # p1 fails only after p0 is waiting
        return Reply(401) if prompt == "p1" else "fine"

    server.respond = respond
    t0 = time.monotonic()
    with pytest.raises(TeacherAuthError):
        make_teacher(max_concurrency=2).complete(["p0", "p1", "p2", "p3"], [1] * 4)
    assert time.monotonic() - t0 < 2
    assert sorted(r.json["messages"][-1]["content"] for r in server.requests) == ["p0", "p1"]


def test_context_manager_closes_the_client(server):
    with OpenAITeacher(OpenAITeacherConfig(server.url, "m")) as t:
        assert t.complete(["a"], [1]) == ["a [1]"]
    with pytest.raises(RuntimeError, match="closed"):
        t.complete(["a"], [1])


@pytest.mark.parametrize("kw, match", [
    ({"base_url": "127.0.0.1:8000/v1"}, "http:// or https://"),
    ({"base_url": "ftp://host/v1"}, "http:// or https://"),
    ({"base_url": "http://"}, "http:// or https://"),
    ({"model": " "}, "model must name"),
    ({"api_key_env": ""}, "api_key_env"),
    ({"max_concurrency": 0}, "max_concurrency must be >= 1"),
    ({"timeout_s": 0}, "timeout_s must be > 0"),
    ({"max_retries": -1}, "max_retries must be >= 0"),
    ({"backoff_s": -0.1}, "backoff_s must be >= 0"),
    ({"temperature": -1}, "temperature must be >= 0"),
    ({"top_p": 0}, r"top_p must be in \(0, 1\]"),
    ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
])
def test_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        OpenAITeacherConfig(**{"base_url": "http://127.0.0.1:8000/v1", "model": "m", **kw})
