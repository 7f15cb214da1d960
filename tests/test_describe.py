"""The inference API (elm/serve/describe.py) and `elm describe`, on a tiny random ELM over real ml-latest-small vectors.

The ELM is untrained, so its words mean nothing; what is tested is the plumbing: which vector reaches which slot,
the distance report, batching, errors, the CLI. A random LM repeats itself under the default settings, so the
tests ban every repeat (no_repeat_ngram_size=1): then its greedy text depends on the vector fed in.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from elm.artifacts import ArtifactStore
from elm.cli import app
from elm.serve.describe import Describer
from elm.serve.errors import DescribeError
from elm.serve.loading import load_vector_file, resolve_elm_folder
from elm.model.elm import ELM, ELMLoadError
from elm.model.config import ELMConfig, SpaceSpec
from elm.synth.catalog import EMB_TOKEN, UnknownTaskError

SEM, BEH, USR = "semantic_movies", "behavioral_movies", "behavioral_users"
KW = dict(max_new_tokens=6, no_repeat_ngram_size=1, repetition_penalty=1.3)
MOVIES = [1, 2, 260]  # Toy Story, Jumanji, Star Wars: their texts differ under KW (checked below)


@pytest.fixture(scope="module")
def world(small_embeddings, tiny_lm_dir, tmp_path_factory):
    """(store, saved ELM folder, Describer over it, the ELM in memory)."""
    store, _, arts = small_embeddings
    sem, beh = arts["semantic"], arts["behavioral"]
    spaces = (SpaceSpec(SEM, "movie", sem.summary["dim"], f"semantic/{sem.version}"),
              SpaceSpec(BEH, "movie", beh.summary["dim"], f"behavioral/{beh.version}"),
              SpaceSpec(USR, "user", beh.summary["dim"], f"behavioral/{beh.version}"))
    torch.manual_seed(0)
    elm = ELM.from_base(ELMConfig(spaces=spaces, base_model=str(tiny_lm_dir)))
    folder = elm.save(tmp_path_factory.mktemp("describe") / "elm", include_base=True)
    return store, folder, Describer(folder, store), elm


def texts(answers) -> list[str]:
    return [a.text for a in answers]


# -----------------------------------------------------------------------------
# the API


def test_by_id_and_by_raw_vector_give_the_same_text_and_report(world):
    _, _, d, _ = world
    by_id = d.describe("summary", movies=MOVIES, **KW)
    raw = d.table(SEM).lookup(MOVIES)
    by_vec = d.describe("summary", vectors=raw, **KW)
    assert texts(by_id) == texts(by_vec)
    assert len(set(texts(by_id))) > 1 and all(texts(by_id)), "texts must depend on the vector for this to prove much"
    for mid, a, b in zip(MOVIES, by_id, by_vec):
        assert a.task == "summary" and a.prompt == f"Summarize the movie {EMB_TOKEN} in a few sentences."
        (sa,), (sb,) = a.slots, b.slots
        assert (sa.space, sa.entity_id, sa.label) == (SEM, mid, f"movieId {mid}")
        assert (sb.space, sb.entity_id, sb.label) == (SEM, None, f"vectors[{MOVIES.index(mid)}]")
        assert sa.nearest_id == sb.nearest_id == mid
        assert sa.nearest_cosine == pytest.approx(1.0, abs=1e-5) and sa.outside is False
    assert by_id[0].slots[0].nearest_title == "Toy Story (1995)"
    assert "Toy Story (1995) (movieId 1), cosine 1.000" in by_id[0].format()


def test_far_vectors_report_a_low_nearest_cosine(world):
    _, _, d, _ = world
    table = d.table(SEM)
    toy, matrix = table.lookup([1])[0], table.vectors.matrix
    rng = np.random.default_rng(0)
    far = rng.standard_normal(toy.shape[0]).astype(np.float32)
    between = 0.5 * (toy + table.lookup([2571])[0])  # Toy Story and The Matrix
    own, mid, rand = (a.slots[0] for a in d.describe("summary", vectors=[toy, between, far], **KW))
    ref = own.reference_cosine
    assert 0.2 < ref < 0.99  # 5th percentile of real movies' nearest-neighbour cosine
    assert own.nearest_id == 1 and own.nearest_cosine > 0.999 and not own.outside
    assert rand.nearest_cosine < 0.4 and rand.outside is True
    assert "far from the data" in rand.describe() and "far from the data" not in own.describe()
    assert rand.nearest_cosine < mid.nearest_cosine < own.nearest_cosine
    # the reported nearest is the true argmax over the whole table
    sims = (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)) @ (far / np.linalg.norm(far))
    assert rand.nearest_id == int(table.vectors.ids[sims.argmax()])
    assert rand.nearest_cosine == pytest.approx(float(sims.max()), abs=1e-5)
    # users, in their behavioral space: an own vector is 1.0, a random one far
    (u_own,), (u_far,) = (a.slots for a in d.describe(
        "user_profile", users=[5], vectors=[rng.standard_normal(32) * 5], **KW))
    assert (u_own.space, u_own.nearest_id, u_own.nearest_title) == (USR, 5, None)
    assert u_own.nearest_cosine > 0.999 and u_far.nearest_cosine < u_own.reference_cosine
    assert u_far.space == USR  # a raw vector in a user task defaults to the user space


def test_a_zero_vector_has_no_nearest_entity(world):
    _, _, d, _ = world
    (zero,) = d.describe("summary", vectors=[np.zeros(d.table(SEM).vectors.dim, dtype=np.float32)], **KW)[0].slots
    assert zero.nearest_id is None and zero.nearest_title is None and zero.nearest_cosine is None
    assert zero.describe().endswith("nearest undefined for a zero vector") and zero.outside is None


def test_a_scaled_vector_reports_its_norm_against_the_spaces(world):
    _, _, d, _ = world
    table = d.table(SEM)
    toy, matrix = table.lookup([1])[0], table.vectors.matrix
    norms = np.linalg.norm(matrix, axis=1)
    own, big, tiny, mid = (a.slots[0] for a in d.describe(
        "summary", vectors=[toy, toy * 1e6, toy * 1e-6, 0.5 * (toy + table.lookup([2571])[0])], **KW))
    assert own.norm_range == pytest.approx((norms.min(), norms.max()), rel=1e-5)
    assert big.norm == pytest.approx(1e6 * np.linalg.norm(toy), rel=1e-4)
    assert big.norm_outside and tiny.norm_outside and not own.norm_outside and not mid.norm_outside
    assert big.nearest_id == 1  # the same direction: the same nearest movie, and the text says why it is read so
    assert "<< norm 1e+06" in big.describe() or "<< norm 1.0" in big.describe()
    assert "only its direction is read" in big.describe() and "norm" not in own.describe()
    assert big.to_dict()["norm_outside"] is True and own.to_dict()["norm"] == pytest.approx(own.norm)


def test_batched_equals_one_by_one_and_keeps_order(world):
    _, _, d, _ = world
    v = d.table(SEM).lookup([2571])[0] * 0.7
    items = [*MOVIES, v, 318]
    batched = d.describe_many("summary", items, batch_size=5, **KW)
    single = [d.describe("summary", **({"vectors": [x]} if isinstance(x, np.ndarray) else {"movies": [x]}), **KW)[0]
              for x in items]
    assert texts(batched) == texts(single)
    def report(a):  # labels differ ("items[3]" vs "vectors[0]"); everything else must not
        return [{k: v for k, v in s.to_dict().items() if k != "label"} for s in a.slots]

    assert [report(a) for a in batched] == [report(a) for a in single]
    assert texts(d.describe_many("summary", items[::-1], batch_size=2, **KW)) == texts(batched)[::-1]
    # a 2-D array is k vectors, one answer each
    assert texts(d.describe("summary", vectors=d.table(SEM).lookup(MOVIES), batch_size=1, **KW)) == texts(batched[:3])


def test_requests_of_several_tasks_batch_together_and_equal_one_task_at_a_time(world):
    _, _, d, _ = world
    requests = [("summary", 1), ("similarities", (1, 2)), ("user_profile", 5), ("summary", 260),
                ("similarities", (260, 2571))]
    mixed = d.describe_requests(requests, batch_size=8, **KW)
    assert [a.task for a in mixed] == [t for t, _ in requests]
    for task in ("summary", "similarities", "user_profile"):
        items = [x for t, x in requests if t == task]
        assert texts(d.describe_many(task, items, batch_size=1, **KW)) == [a.text for a in mixed if a.task == task]
    assert mixed[2].slots[0].space == USR and [s.entity_id for s in mixed[1].slots] == [1, 2]
    with pytest.raises(DescribeError, match="empty"):
        d.describe_requests([])


def test_free_form_prompt_with_two_slots(world):
    _, _, d, _ = world
    prompt = f"What do the movies {EMB_TOKEN} and {EMB_TOKEN} have in common?"
    a, b = d.describe(prompt=prompt, movies=[1, 2, 260, 2571], **KW)
    assert a.task is None and a.prompt == prompt
    assert [s.entity_id for s in a.slots] == [1, 2] and [s.entity_id for s in b.slots] == [260, 2571]
    assert [s.nearest_id for s in b.slots] == [260, 2571]
    # the same pairs through describe_many, and a pair that mixes an id with a vector
    pairs = d.describe_many(None, [(1, 2), (260, d.table(SEM).lookup([2571])[0])], prompt=prompt, **KW)
    assert texts(pairs) == texts([a, b])
    assert pairs[1].slots[1].entity_id is None and pairs[1].slots[1].nearest_id == 2571
    # a catalog two-slot task; ids and a raw vector fill slots in order (ids first)
    (mix,) = d.describe("interpolation", movies=[1], vectors=[d.table(SEM).lookup([2571])[0]], **KW)
    assert [(s.entity_id, s.nearest_id) for s in mix.slots] == [(1, 1), (None, 2571)]
    # spaces per slot: a user and a movie in one free-form prompt, each read in its own space
    (um,) = d.describe_many(None, [(5, 1)], prompt=f"Would the user {EMB_TOKEN} like {EMB_TOKEN}?",
                            spaces=[USR, BEH], **KW)
    assert [(s.space, s.nearest_id) for s in um.slots] == [(USR, 5), (BEH, 1)]
    assert um.slots[1].nearest_title == "Toy Story (1995)"  # titles for behavioral movies too


def test_bad_inputs_raise_clear_errors(world):
    _, _, d, _ = world
    good = d.table(SEM).lookup([1])[0]
    cases = [
        (dict(task="summary", vectors=[np.zeros(10)]),
         DescribeError, r"vectors\[0\]: vector has dimension 10, space 'semantic_movies' expects 384"),
        (dict(task="user_profile", vectors=[good]),
         DescribeError, r"dimension 384, space 'behavioral_users' expects 32"),
        (dict(task="summary", vectors=[np.where(np.arange(384) == 7, np.nan, good)]),
         DescribeError, r"vectors\[0\]: vector has NaN/inf at position\(s\) \[7\]"),
        (dict(task="summary", movies=[1], vectors=[np.full(384, np.inf)]), DescribeError, r"vectors\[0\].*NaN/inf"),
        (dict(prompt=f"Compare {EMB_TOKEN} and {EMB_TOKEN}.", movies=[1, 2, 3]),
         DescribeError, r"the prompt has 2 <emb> placeholder\(s\) but 3 input\(s\) were given \(3 movie id\(s\)\)"),
        (dict(task="similarities", movies=[1]), DescribeError, r"has 2 <emb> placeholder\(s\) but 1 input"),
        (dict(task="sumary", movies=[1]), UnknownTaskError, r"unknown task 'sumary'; known: summary, positive_review"),
        (dict(task="summary", movies=[1, 99999999]),
         DescribeError, r"movieId \[99999999\] not in space 'semantic_movies' \(table semantic/\w+/movies.parquet"),
        (dict(task="user_profile", users=[123456]),
         DescribeError, r"userId \[123456\] not in space 'behavioral_users' \(table behavioral/\w+/users"),
        (dict(task="user_profile", movies=[1]),
         DescribeError, r"movieId 1: slot 0 of task 'user_profile' takes a user vector but space 'semantic_movies'"),
        (dict(task="summary", prompt=f"{EMB_TOKEN}", movies=[1]), DescribeError, "exactly one of task"),
        (dict(movies=[1]), DescribeError, "exactly one of task"),
        (dict(prompt="Describe the movie.", movies=[1]), DescribeError, "the prompt has no <emb> placeholder"),
        (dict(task="summary"), DescribeError, "nothing to describe"),
        (dict(task="summary", movies=[1], movie_space="semantic_film"),
         DescribeError, "unknown embedding space 'semantic_film'; this ELM reads semantic_movies, behavioral_"),
        (dict(task="summary", vectors=[np.zeros((2, 384))]),
         DescribeError, r"expected a 1-D vector, got shape \[2, 384\]"),
        (dict(task="summary", movies=["Toy Story"]), DescribeError, "'Toy Story' is not an integer id"),
    ]
    for kwargs, err, match in cases:
        with pytest.raises(err, match=match):
            d.describe(**kwargs, max_new_tokens=2)
    with pytest.raises(DescribeError, match=r"items\[0\] holds 1 input\(s\) but the prompt has 2"):
        d.describe_many("similarities", [1])
    with pytest.raises(DescribeError, match=r"items\[1\]: vector has dimension 3, space 'semantic_movies'"):
        d.describe_many("summary", [1, [0.1, 0.2, 0.3]])


def test_missing_or_corrupt_model_folders(world, tmp_path):
    store, folder, _, _ = world
    with pytest.raises(ELMLoadError, match="no saved ELM at .*nowhere"):
        Describer(tmp_path / "nowhere" / "elm", store)
    with pytest.raises(ELMLoadError, match="no saved ELM folder deadbeef and no 'train' artifact version"):
        Describer("deadbeef", store)
    with pytest.raises(ELMLoadError, match="no 'train' artifact"):
        Describer(None, ArtifactStore(tmp_path / "fresh"))  # a store with no train artifact
    (tmp_path / "empty").mkdir()
    with pytest.raises(ELMLoadError, match="is not a saved ELM: it has no elm_config.json"):
        Describer(tmp_path / "empty", store)

    def broken(name: str, edit) -> Path:
        copy = tmp_path / name
        shutil.copytree(folder, copy)
        edit(copy)
        return copy

    cases = {
        "config": (lambda p: (p / "elm_config.json").write_text("{not json"), "elm_config.json is corrupt"),
        "weights": (lambda p: (p / "adapters.safetensors").write_bytes(b"\0" * 64), "adapters.safetensors is corrupt"),
        "base": (lambda p: (p / "base" / "model.safetensors").write_bytes(b"garbage"), "cannot load the base model"),
        "nobase": (lambda p: shutil.rmtree(p / "base"), "cannot load the ELM in|base"),
        "tokenizer": (lambda p: (p / "tokenizer_config.json").unlink(), "tokenizer_config.json is missing"),
    }
    for name, (edit, match) in cases.items():
        with pytest.raises(ELMLoadError, match=match):
            Describer(broken(name, edit), store)


def test_train_artifact_by_version_prefix_latest_and_folder(world, tmp_path):
    store, folder, d, elm = world
    own = ArtifactStore(tmp_path / "artifacts")
    own.root.mkdir(parents=True)
    for stage in ("ingest", "semantic", "behavioral"):  # the spaces' sources, shared with the session store
        os.symlink(store.root / stage, own.root / stage)
    art, _ = own.produce("train", inputs={}, config={"test": 1}, code_version="test",
                         build=lambda w: elm.save(w.path / "elm", include_base=True))
    for model in (None, f"train={art.version}", art.version[:6], str(art.path), art.path / "elm"):
        assert resolve_elm_folder(model, own) == art.path / "elm", model
    latest = Describer.from_train(own)
    assert latest.folder == art.path / "elm"
    assert texts(latest.describe("summary", movies=[1], **KW)) == texts(d.describe("summary", movies=[1], **KW))


def test_spaces_without_a_table_and_explicit_tables(world, tiny_lm_dir):
    _, _, d, elm = world
    torch.manual_seed(0)
    bare = ELM.from_base(ELMConfig(spaces=(SpaceSpec(SEM, "movie", 384),), base_model=str(tiny_lm_dir)))
    nd = Describer(bare, ArtifactStore(d.store.root))
    with pytest.raises(DescribeError, match="space 'semantic_movies' has no vector table: its source '' is not"):
        nd.describe("summary", movies=[1])
    (a,) = nd.describe("summary", vectors=[d.table(SEM).lookup([1])[0]], **KW)  # raw vectors still work
    assert a.slots[0].nearest_id is None and "no vector table" in a.format()
    # ... decoded without the default guidance (no mean to guide from), as guidance 1 decodes them.
    assert [a.text] == texts(nd.describe("summary", vectors=[d.table(SEM).lookup([1])[0]], guidance_scale=1, **KW))
    explicit = Describer(bare, d.store, tables={SEM: d.table(SEM).vectors}, titles={1: "Toy Story"})
    (b,) = explicit.describe("summary", movies=[1], guidance_scale=1, **KW)
    assert (b.slots[0].nearest_id, b.slots[0].nearest_title) == (1, "Toy Story") and b.text == a.text
    # With a table there is a mean, so the default decoding is guided (guidance_scale=1 above turned it off).
    assert texts(explicit.describe("summary", movies=[1], **KW)) != [a.text]
    with pytest.raises(DescribeError, match=r"tables given for unknown space\(s\) \['users'\]"):
        Describer(bare, d.store, tables={"users": d.table(SEM).vectors})


def test_guidance_pulls_away_from_the_spaces_mean_vector(world):
    """Describer's null input is the mean of the space's real vectors: guiding the mean itself changes
    nothing (its null is itself), guiding a movie changes its text, and at scale 0 every movie gets the mean's
    text. Without a vector table there is no mean: a clear error, not a silent unguided answer."""
    _, _, d, elm = world
    mean = d.table(SEM).vectors.matrix.mean(axis=0)
    (plain_mean,) = texts(d.describe("summary", vectors=[mean], **KW))
    assert texts(d.describe("summary", vectors=[mean], guidance_scale=3.0, **KW)) == [plain_mean]
    assert texts(d.describe("summary", movies=MOVIES, guidance_scale=0.0, **KW)) == [plain_mean] * len(MOVIES)
    plain, guided = (texts(d.describe("summary", movies=MOVIES, guidance_scale=g, **KW)) for g in (1.0, 3.0))
    assert guided != plain
    assert texts(d.describe("summary", movies=MOVIES, guidance_scale="movie=3", **KW)) == guided
    # Per slot kind: users unguided while movies are guided, in one batch of two tasks.
    users = d.table(USR).vectors.ids[:2].tolist()
    plain_users = texts(d.describe("user_profile", users=users, guidance_scale=1.0, **KW))
    both = d.describe_requests([("summary", m) for m in MOVIES] + [("user_profile", u) for u in users],
                               spaces=None, guidance_scale={"movie": 3.0, "user": 1.0}, **KW)
    assert texts(both) == guided + plain_users
    assert texts(d.describe("user_profile", users=users, guidance_scale=3.0, **KW)) != plain_users
    for bad, msg in [({"film": 2.0}, r"keys are slot kinds, 'movie' and 'user'; got \['film'\]"),
                     ("movie=x", "neither a number nor movie=SCALE"), (-1.0, r"must be a number in \[0, 10\]")]:
        with pytest.raises(DescribeError, match=msg):
            d.describe("summary", movies=MOVIES[:1], guidance_scale=bad, **KW)
    bare = Describer(elm, ArtifactStore(d.store.root))
    bare.spaces[SEM] = SpaceSpec(SEM, "movie", bare.spaces[SEM].dim)  # no source: no table, no mean
    with pytest.raises(DescribeError, match="vector guidance needs space 'semantic_movies'.s real vectors"):
        bare.describe("summary", vectors=[mean], guidance_scale=2.0, **KW)


def test_vector_files(tmp_path):
    v = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.save(tmp_path / "a.npy", v)
    np.save(tmp_path / "one.npy", v[0])
    (tmp_path / "a.json").write_text(json.dumps(v.tolist()))
    assert load_vector_file(tmp_path / "a.npy").shape == (2, 3)
    assert load_vector_file(tmp_path / "one.npy").shape == (1, 3)
    assert np.array_equal(load_vector_file(tmp_path / "a.json"), v)
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2)))
    (tmp_path / "bad.json").write_text('{"a": 1')
    (tmp_path / "v.txt").write_text("1 2 3")
    (tmp_path / "empty.npy").write_bytes(b"")
    np.save(tmp_path / "short.npy", v)
    (tmp_path / "short.npy").write_bytes((tmp_path / "short.npy").read_bytes()[:-5])
    for name, match in [("missing.npy", "does not exist"), ("bad.json", "unreadable or not numeric"),
                        ("empty.npy", r"empty.npy is empty or truncated \(0 bytes\)"),
                        ("short.npy", "short.npy is unreadable or not numeric"),
                        ("cube.npy", r"expected shape \[k, dim\] or \[dim\], got \[2, 2, 2\]"),
                        ("v.txt", "unknown type '.txt'")]:
        with pytest.raises(DescribeError, match=match):
            load_vector_file(tmp_path / name)


# -----------------------------------------------------------------------------
# the CLI


def test_cli_describe(world, tmp_path):
    store, folder, d, _ = world
    runner = CliRunner()
    base = ["describe", "--model", str(folder), "--artifacts", str(store.root), "--max-new-tokens", "6",
            "--no-repeat-ngram-size", "1", "--repetition-penalty", "1.3"]
    r = runner.invoke(app, [*base, "--task", "summary", "--movie", "1", "--movie", "260"])
    assert r.exit_code == 0, r.output
    expected = texts(d.describe("summary", movies=[1, 260], **KW))
    assert r.output.count("[summary]") == 2 and all(t in r.output for t in expected)
    assert "semantic_movies  movieId 1: nearest Toy Story (1995) (movieId 1), cosine 1.000" in r.output

    rng = np.random.default_rng(1)
    np.save(tmp_path / "v.npy", np.stack([d.table(SEM).lookup([260])[0], rng.standard_normal(384)]).astype(np.float32))
    r = runner.invoke(app, [*base, "--task", "summary", "--vectors", str(tmp_path / "v.npy"), "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert len(rows) == 2
    assert rows[0]["text"] == expected[1] and rows[0]["slots"][0]["nearest_id"] == 260
    assert rows[0]["slots"][0]["label"] == "v.npy[0]" and rows[1]["slots"][0]["outside"] is True

    r = runner.invoke(app, [*base, "--prompt", f"Compare {EMB_TOKEN} with {EMB_TOKEN}.", "-m", "1", "-m", "2"])
    assert r.exit_code == 0 and r.output.count("[prompt] movieId 1, movieId 2") == 1, r.output

    np.save(tmp_path / "short.npy", np.zeros(5, dtype=np.float32))
    for args, message in [
        (["--task", "sumary", "--movie", "1"], "unknown task 'sumary'"),
        (["--task", "summary", "--vectors", str(tmp_path / "short.npy")],
         "short.npy[0]: vector has dimension 5, space 'semantic_movies' expects 384"),
        (["--task", "summary", "--movie", "99999999"], "movieId [99999999] not in space 'semantic_movies'"),
        (["--task", "summary", "--movie", "1", "--from", "train=abc"], "give --model or --from, not both"),
    ]:
        r = runner.invoke(app, [*base, *args])
        out = " ".join(r.output.split())  # rich wraps long lines
        assert r.exit_code == 1 and message in out and "Traceback" not in out, (args, r.output)
    r = runner.invoke(app, ["describe", "--task", "summary", "--movie", "1", "--artifacts", str(tmp_path / "none")])
    assert r.exit_code == 1 and "no 'train' artifact" in " ".join(r.output.split())

    r = runner.invoke(app, ["describe", "--help"])
    assert r.exit_code == 0 and "elm describe --task summary --movie 1" in r.output and "--vectors" in r.output


def test_the_cli_decodes_as_the_library_does_by_default():
    """`elm describe` and Describer.describe (which evaluation uses) must decode alike unless told otherwise."""
    import typer

    from elm.evaluate.config import EvalConfig
    from elm.serve.describe import DEFAULT_GUIDANCE_SCALE, DEFAULT_NO_REPEAT_NGRAM_SIZE, DEFAULT_REPETITION_PENALTY

    cmd = typer.main.get_command(app).commands["describe"]
    defaults = {p.name: p.default for p in cmd.params}
    assert defaults["repetition_penalty"] == DEFAULT_REPETITION_PENALTY
    assert defaults["no_repeat_ngram_size"] == DEFAULT_NO_REPEAT_NGRAM_SIZE
    assert defaults["guidance"] is None  # the library's default
    assert EvalConfig().guidance_scale == dict(DEFAULT_GUIDANCE_SCALE)
    said = ",".join(f"{k}={v:g}" for k, v in DEFAULT_GUIDANCE_SCALE.items())  # the help states the default
    for name in ("describe", "evaluate"):
        assert f"(default: {said})" in next(p.help for p in typer.main.get_command(app).commands[name].params
                                             if p.name == "guidance")
