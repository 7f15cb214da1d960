"""LocalTeacher: batching, budgets, seeds and errors on a tiny random Llama; one real SmolLM2 run."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from elm.model.base_lm import ModelNotFoundError
from elm.synth.facts import movie_facts
from elm.synth.catalog import get_task, render_teacher_prompt
from elm.synth.teachers.local import LocalTeacher, LocalTeacherConfig
from elm.synth.teachers.base import SYSTEM_PROMPT, ChatTeacher, TeacherError

PROMPTS = [
    "Hi.",
    "Write a long and detailed review of a science fiction movie about robots and space travel in the far future.",
    "What is a film?",
    "Summarize the movie Toy Story in one sentence, please.",
    "Tell me about comedy movies from the nineties and why people liked them so much.",
]


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """LocalTeacher(threads=n) sets torch's process-wide thread count; later tests get theirs back."""
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def tiny(model_dir, **kw) -> LocalTeacher:
    # A random tiny model repeats its favourite token ("\n") forever, which strips to "". Forbidding any
    # repeated token makes it write distinct, prompt-dependent text, so equalities below mean something.
    # One thread: tiny ops are all barrier; on a busy machine two OpenMP threads mostly wait for each other.
    kw = dict(repetition_penalty=1.0, no_repeat_ngram_size=1, threads=1) | kw
    return LocalTeacher(LocalTeacherConfig(model=str(model_dir), **kw))


def test_batched_greedy_equals_one_at_a_time_in_order(tiny_lm_dir):
    budgets = [12] * len(PROMPTS)
    one = tiny(tiny_lm_dir, batch_size=1)
    single = [one.complete([p], [n])[0] for p, n in zip(PROMPTS, budgets)]
    assert all(single) and len(set(single)) == len(PROMPTS)  # non-trivial and prompt-dependent
    # batch_size 2 over 5 prompts of different lengths: sorted into mixed batches with left padding.
    batched = tiny(tiny_lm_dir, batch_size=2).complete(PROMPTS, budgets)
    assert batched == single
    assert one.complete(PROMPTS, budgets) == single


def test_each_prompt_gets_its_own_budget(tiny_lm_dir):
    t = tiny(tiny_lm_dir, batch_size=8)
    budgets = [16, 1, 9, 4]
    out = t.complete([PROMPTS[3]] * 4, budgets)  # one batch sharing the largest budget
    by_budget = [o for _, o in sorted(zip(budgets, out))]
    for shorter, longer in zip(by_budget, by_budget[1:]):  # greedy: each is a strict prefix of the next
        assert longer.startswith(shorter) and len(longer) > len(shorter)
    assert t.last_stats["new_tokens"] == sum(budgets)  # a random model does not stop early
    # Mixed budgets across prompts: the same as asking one prompt at a time.
    budgets = [3, 10, 1, 7, 5]
    single = [t.complete([p], [n])[0] for p, n in zip(PROMPTS, budgets)]
    assert tiny(tiny_lm_dir, batch_size=2).complete(PROMPTS, budgets) == single


def test_seeded_sampling_is_reproducible(tiny_lm_dir):
    t = tiny(tiny_lm_dir, batch_size=2, temperature=1.0, top_p=0.95, no_repeat_ngram_size=0)
    a = t.complete(PROMPTS, [10] * 5, seed=1)
    assert t.complete(PROMPTS, [10] * 5, seed=1) == a
    assert t.complete(PROMPTS, [10] * 5, seed=2) != a
    assert tiny(tiny_lm_dir).complete(PROMPTS, [10] * 5) != a  # greedy is not sampling


def test_stats_and_input_errors(tiny_lm_dir):
    t = tiny(tiny_lm_dir)
    assert t.complete([], []) == []
    t.complete(PROMPTS[:2], [5, 3])
    s = t.last_stats
    assert s["prompts"] == 2 and s["new_tokens"] == 8 and s["seconds"] > 0
    assert s["tokens_per_s"] == pytest.approx(8 / s["seconds"], rel=0.01)
    with pytest.raises(TeacherError, match="2 prompts but 1 max_new_tokens"):
        t.complete(PROMPTS[:2], [5])
    with pytest.raises(TeacherError, match="max_new_tokens must all be >= 1"):
        t.complete(PROMPTS[:2], [5, 0])
    with pytest.raises(TeacherError, match=r"context 8192"):
        t.complete(["word " * 9000], [8])


def test_id_and_settings(tiny_lm_dir):
    t = tiny(tiny_lm_dir, batch_size=3, threads=2)  # keep_torch_threads restores the count
    assert isinstance(t, ChatTeacher)
    assert t.id == f"local:{tiny_lm_dir.name}"
    assert t.settings == {"temperature": 0.0, "top_p": 0.9, "repetition_penalty": 1.0, "no_repeat_ngram_size": 1,
                          "system_prompt": SYSTEM_PROMPT, "dtype": "float32"}
    json.dumps(t.settings)
    # Speed knobs are not settings: the same targets must keep the same artifact version.
    assert tiny(tiny_lm_dir, batch_size=16).settings == t.settings
    assert tiny(tiny_lm_dir, temperature=0.7).settings != t.settings


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        LocalTeacher(LocalTeacherConfig(model=str(tmp_path / "no-such-model")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        LocalTeacher(LocalTeacherConfig(model=str(tmp_path / "empty")))


@pytest.mark.parametrize("field, value", [("batch_size", 0), ("temperature", -0.1), ("top_p", 0.0),
                                          ("repetition_penalty", 0.0), ("no_repeat_ngram_size", -1),
                                          ("threads", 0), ("dtype", "float64"), ("model", " ")])
def test_config_is_validated(field, value):
    with pytest.raises(ValueError, match=f"LocalTeacherConfig.{field}="):
        LocalTeacherConfig(**{field: value})


def test_real_smollm_summarizes_movies(smollm_dir):
    movies = pd.DataFrame({
        "movieId": [1, 2571, 318], "name": ["Toy Story", "Matrix, The", "Shawshank Redemption, The"],
        "year": [1995, 1999, 1994],
        "genres": [["Adventure", "Animation", "Children", "Comedy", "Fantasy"], ["Action", "Sci-Fi", "Thriller"],
                   ["Crime", "Drama"]]})
    tags = pd.DataFrame({"userId": [1, 1, 2, 2, 3], "movieId": [1, 1, 2571, 2571, 318],
                         "tag": ["pixar", "toys", "cyberpunk", "virtual reality", "prison"]})
    facts = movie_facts(movies, tags).to_dict("records")
    prompts = [render_teacher_prompt(get_task("summary"), f) for f in facts]
    t = LocalTeacher(LocalTeacherConfig(model=str(smollm_dir), threads=1))
    out = t.complete(prompts, [40] * 3)
    assert t.id == f"local:{smollm_dir.name}" and t.last_stats["new_tokens"] > 60
    assert len(set(out)) == 3
    for text in out:
        words = re.findall(r"[A-Za-z]+", text)
        assert len(words) >= 10, text
        assert sum(w.lower() in {"the", "a", "of", "and", "is", "in", "with", "to"} for w in words) >= 2, text


def test_openai_teacher_against_a_server_backed_by_the_local_teacher(tiny_lm_dir):
    """The openai teacher over a real chat-completions server whose answers come from a LocalTeacher:
    the same prompts give the same greedy text either way (how synthesis scales out to a vLLM server)."""
    from elm.synth.teachers.openai import OpenAITeacher, OpenAITeacherConfig
    from tests.chat_server import ChatServer

    local = tiny(tiny_lm_dir)
    prompts = ["Describe a quiet film.", "Pitch a loud comedy about toys.", "Summarize a sad war drama."]

    def respond(request: dict) -> str:
        assert request["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
        return local.complete([request["messages"][-1]["content"]], [request["max_tokens"]])[0]

    with ChatServer(respond) as server:
        with OpenAITeacher(OpenAITeacherConfig(base_url=server.url, model="tiny", max_concurrency=1)) as remote:
            via_http = remote.complete(prompts, [12, 6, 9])
    assert via_http == local.complete(prompts, [12, 6, 9])
    assert len(set(via_http)) == 3
