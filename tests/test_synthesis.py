"""The synthesize stage on the real ml-latest-small embeddings: planning, teachers, checks, resume, reference SC."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from elm import vectors as vec
from elm.artifacts import ArtifactStore
from elm.synth.facts import movie_facts
from elm.synth.config import SynthesisConfig, SynthesisError
from elm.synth.plan import eligible_movies, plan_items
from elm.synth.reference import reference_sc
from elm.synth.stage import report, synthesize
from elm.synth.catalog import MOVIE_TASKS, UnknownTaskError, get_task
from elm.synth.teachers.openai import OpenAITeacherConfig, TeacherUnavailableError
from elm.synth.teachers.template import TemplateTeacher
from tests.chat_server import ChatServer

SMALL = SynthesisConfig(teacher="template", train_movies=12, heldout_movies=5, train_users=3, heldout_users=2,
                        tasks_per_movie=3, chunk_size=16)


@pytest.fixture(scope="module")
def inputs(small_embeddings):
    store, ingest_art, arts = small_embeddings
    return {"ingest": ingest_art, **arts}


@pytest.fixture(scope="module")
def template_run(inputs, tmp_path_factory):
    store = ArtifactStore(tmp_path_factory.mktemp("synth"))
    art, hit = synthesize(inputs, SMALL, store)
    return store, art, hit


def _read(art, name="examples.parquet") -> pd.DataFrame:
    return pd.read_parquet(art.file(name))


# ---- config ----------------------------------------------------------------------------------

def test_config_errors_name_the_problem():
    with pytest.raises(UnknownTaskError, match="no_such_task"):
        SynthesisConfig(tasks=("summary", "no_such_task"))
    with pytest.raises(ValueError, match="teacher must be one of"):
        SynthesisConfig(teacher="gpt")
    with pytest.raises(ValueError, match="needs SynthesisConfig.openai"):
        SynthesisConfig(teacher="openai")
    with pytest.raises(ValueError, match="train_movies"):
        SynthesisConfig(train_movies=-1)
    with pytest.raises(ValueError, match="tuple of names"):
        SynthesisConfig(tasks="summary")


def test_speed_settings_do_not_change_the_version():
    a = SynthesisConfig(teacher="template", chunk_size=8).version_config()
    assert a == SynthesisConfig(teacher="template", chunk_size=500).version_config()
    assert a != SynthesisConfig(teacher="template", seed=1).version_config()
    local = SynthesisConfig(teacher="local").version_config()
    assert "batch_size" not in local["teacher_settings"] and "model" in local["teacher_settings"]


# ---- planning ----------------------------------------------------------------------------------

def test_plan_is_deterministic_and_respects_splits(inputs):
    t = {k: pd.read_parquet(inputs["ingest"].file(f"{k}.parquet")) for k in ("movies", "tags", "ratings")}
    sem = vec.read(inputs["semantic"].file("movies.parquet"))
    beh = vec.read(inputs["behavioral"].file("movies.parquet"))
    facts = movie_facts(t["movies"], t["tags"])
    eligible = eligible_movies(facts, t["ratings"], [sem, beh], min_ratings=10)
    no_meta = facts.loc[(facts["genres"].map(len) == 0) & (facts["tags"].map(len) == 0) & facts["year"].isna(), "movieId"]
    assert len(no_meta) > 0 and not set(no_meta) & set(eligible)
    counts = t["ratings"]["movieId"].value_counts()
    assert (counts.reindex(eligible).fillna(0) >= 10).all()

    msplit = pd.read_parquet(inputs["splits"].file("movies.parquet")).set_index("movieId")["split"]
    usplit = pd.read_parquet(inputs["splits"].file("users.parquet")).set_index("userId")["split"]
    users = pd.Index(usplit.index)
    cfg = SynthesisConfig(teacher="template", train_movies=30, heldout_movies=6, tasks_per_movie=4)
    items = plan_items(cfg, msplit, usplit, eligible, users, sem)
    again = plan_items(cfg, msplit, usplit, eligible, users, sem)
    pd.testing.assert_frame_equal(items, again)

    movies = items[items.kind == "movie"]
    per_movie = movies.groupby(["split", "entity_id"]).size()
    assert (per_movie["train"] == 4).all() and len(per_movie["train"]) == 30
    assert (per_movie["heldout"] == len(MOVIE_TASKS)).all() and len(per_movie["heldout"]) == 6
    assert movies.groupby("split")["task"].nunique()["train"] > 10  # tasks really are sampled per movie

    pairs = movies[movies.partner_id.notna()]
    assert (pairs.partner_id != pairs.entity_id).all()
    assert (msplit.reindex(pairs.partner_id.astype(int)).to_numpy() == pairs.split.to_numpy()).all()
    nearest = pairs[pairs.task.map(lambda n: get_task(n).partner == "nearest")].iloc[0]
    pool = np.array(sorted(set(eligible) & set(msplit[msplit == nearest.split].index)))
    best = sem.nearest(sem.get([nearest.entity_id])[0], n=len(pool), exclude={int(nearest.entity_id)})
    assert int(nearest.partner_id) == next(m for m, _ in best if m in set(pool))

    bigger = plan_items(SynthesisConfig(teacher="template", train_movies=40, heldout_movies=6, tasks_per_movie=4),
                        msplit, usplit, eligible, users, sem)
    first = set(movies[movies.split == "train"].entity_id)
    assert first <= set(bigger[bigger.split == "train"].entity_id)  # growing the sample keeps earlier movies


# ---- the stage, template teacher -------------------------------------------------------------------

def test_template_run_writes_checked_targets_and_reference(template_run, inputs):
    store, art, hit = template_run
    assert not hit
    ex = _read(art)
    for col in ("kind", "entity_id", "partner_id", "task", "split", "elm_prompt", "target", "teacher", "gen_settings"):
        assert col in ex.columns
    assert set(ex.split) == {"train", "heldout"} and set(ex.kind) == {"movie", "user"}
    assert (ex.teacher == "template").all() and (ex.target.str.len() > 0).all()
    assert ex.elm_prompt.str.contains("<emb>").all()
    movies = ex[ex.kind == "movie"]
    for r in movies.itertuples():  # no target names its own movie
        name = r.title.rsplit(" (", 1)[0]
        if len(name) >= 4:
            assert not re.search(rf"(?<!\w){re.escape(name.lower())}(?!\w)", r.target.lower()), (r.task, r.title)
    ref = _read(art, "reference_sc.parquet")
    assert set(ref.task) == set(MOVIE_TASKS) and (ref.n == 5).all()
    # Targets written from a movie's own metadata match its semantic vector better than another movie's.
    assert ref.sc_truth.mean() > ref.sc_random.mean() + 0.05
    text = report(art)
    assert "mean over tasks" in text and "summary" in text


def test_rerun_is_a_cache_hit(template_run, inputs):
    store, art, _ = template_run
    again, hit = synthesize(inputs, SMALL, store)
    assert hit and again.version == art.version


def test_reference_sc_truth_beats_shuffled_targets(template_run, inputs):
    _, art, _ = template_run
    ex = _read(art)
    sem = vec.read(inputs["semantic"].file("movies.parquet"))
    shuffled = ex.copy()
    held = shuffled.split == "heldout"
    shuffled.loc[held, "target"] = shuffled.loc[held, "target"].sample(frac=1, random_state=0).to_numpy()
    real = reference_sc(ex, sem, "all-MiniLM-L6-v2")
    fake = reference_sc(shuffled, sem, "all-MiniLM-L6-v2")
    assert real.sc_truth.mean() > fake.sc_truth.mean() + 0.05


class _FlakyTemplate(TemplateTeacher):
    """The template teacher, failing once it has written `fail_after` targets (an interrupted run)."""

    def __init__(self, fail_after: int | None = None):
        self.calls, self.fail_after = 0, fail_after

    def generate(self, task, facts, partner_facts=None):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        return super().generate(task, facts, partner_facts)


def test_interrupted_run_resumes_without_regenerating(inputs, template_run, tmp_path):
    _, uninterrupted, _ = template_run
    store = ArtifactStore(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        synthesize(inputs, SMALL, store, teacher=_FlakyTemplate(fail_after=40))
    assert store.latest("synthesize") is None  # nothing published
    second = _FlakyTemplate()
    art, hit = synthesize(inputs, SMALL, store, teacher=second)
    assert not hit
    total = art.summary["rows"]
    assert second.calls == total - 32  # two chunks of 16 were finished before the kill
    pd.testing.assert_frame_equal(_read(art), _read(uninterrupted))
    assert art.version == uninterrupted.version


# ---- the openai teacher through a real local server -------------------------------------------------

TINY = SynthesisConfig(teacher="template", tasks=("summary", "similarities", "user_profile"), train_movies=4,
                       heldout_movies=3, train_users=1, heldout_users=1, chunk_size=4)


def _openai(url: str, **kw) -> SynthesisConfig:
    o = OpenAITeacherConfig(base_url=url, model="test", max_retries=1, backoff_s=0.01, timeout_s=5)
    return SynthesisConfig(**{**{f: getattr(TINY, f) for f in ("tasks", "train_movies", "heldout_movies",
                                                                  "train_users", "heldout_users", "chunk_size")},
                              "teacher": "openai", "openai": o, **kw})


def _answer_by_task(request: dict) -> str:
    """A plausible answer for each prompt, grounded in the facts line of the prompt, like a real teacher."""
    prompt = request["messages"][-1]["content"]
    facts = re.search(r"Facts: (.*)", prompt)
    line = facts.group(1) if facts else "This user enjoys dramas and comedies."
    return "This film is described as follows. " + re.sub(r"Title: [^.]*\. ?", "", line)


def test_openai_teacher_end_to_end_and_rejections(inputs, tmp_path):
    def respond(request):
        prompt = request["messages"][-1]["content"]
        title = re.search(r"(?:Movie|First movie): (.*) \(", prompt)
        if title and "Pixar" not in prompt and hash(title.group(1)) % 3 == 0:
            return f"{title.group(1)} is a film."  # names its own title: the only sentence goes, so it is rejected
        return _answer_by_task(request)

    with ChatServer(respond) as server:
        art, _ = synthesize(inputs, _openai(server.url), ArtifactStore(tmp_path))
        assert len(server.requests) == art.summary["rows"]
        assert server.requests[0].json["model"] == "test"
    ex, rej = _read(art), _read(art, "rejected.parquet")
    assert ex.teacher.str.startswith("openai:test@http://127.0.0.1").all()
    assert (rej.reason == "names_title").all() and len(rej) == sum(art.summary["rejected"].values())
    assert len(ex) + len(rej) == art.summary["rows"]


def test_all_rejected_publishes_nothing(inputs, tmp_path):
    with ChatServer(lambda request: "") as server:
        with pytest.raises(SynthesisError, match="rejected"):
            synthesize(inputs, _openai(server.url), ArtifactStore(tmp_path))
    assert ArtifactStore(tmp_path).latest("synthesize") is None


def test_failing_endpoint_keeps_finished_chunks_and_resumes(inputs, tmp_path):
    from tests.chat_server import Reply

    store, served = ArtifactStore(tmp_path), {"n": 0}

    def failing_after_two_chunks(request):
        served["n"] += 1
        return _answer_by_task(request) if served["n"] <= 8 else Reply(503)

    with ChatServer(failing_after_two_chunks) as server:
        cfg = _openai(server.url)
        with pytest.raises(TeacherUnavailableError, match="127.0.0.1"):
            synthesize(inputs, cfg, store)
        assert store.latest("synthesize") is None
        before = len(server.requests)
        server.respond = _answer_by_task  # the endpoint is back
        art, _ = synthesize(inputs, cfg, store)
        assert len(server.requests) - before == art.summary["rows"] - 8  # the 2 finished chunks are not re-asked


# ---- the teacher registry ----------------------------------------------------------------------------

def test_a_teacher_backend_is_one_registry_entry(inputs, tmp_path, monkeypatch):
    """A backend registered in elm/synth/teachers/__init__.py is a valid teacher name, is built through its
    factory and stamps every row with its id: nothing else in the stage needs to know it."""
    from dataclasses import replace

    from elm.synth import teachers

    class Echo:  # a ChatTeacher: answers from the facts line of each prompt
        id, settings = "echo", {}

        def complete(self, prompts, max_new_tokens, seed=0):
            return [_answer_by_task({"messages": [{"content": p}]}) for p in prompts]

    with pytest.raises(ValueError, match="teacher must be one of"):
        replace(TINY, teacher="echo")
    monkeypatch.setitem(teachers.BACKENDS, "echo", teachers.Backend("echo", lambda s, store: Echo(), lambda s: "echo:v1"))
    art, _ = synthesize(inputs, replace(TINY, teacher="echo"), ArtifactStore(tmp_path))
    ex = _read(art)
    assert len(ex) > 0 and set(ex["teacher"]) == {"echo:v1"} and art.summary["teacher"] == "echo:v1"
    assert ex["target"].str.startswith("This film is described as follows.").all()
