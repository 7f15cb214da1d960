"""The closed-form start of a movie adapter (elm/train/warm_start.py): held-out vectors read as their captions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from elm.model.config import ELMConfig, SpaceSpec
from elm.model.elm import ELM
from elm.train.warm_start import caption_token_ids, movie_caption, user_caption, user_captions, warm_start_adapter

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Children"]


def test_captions_say_the_year_and_genres_in_words():
    assert movie_caption(1995, ["Comedy", "Sci-Fi"]) == " 1995 comedy sci-fi"
    assert movie_caption(2003.0, ["Children", "(no genres listed)"]) == " 2003 family"
    assert movie_caption(np.nan, ["Drama"]) == " drama"  # an unknown year is left out, not invented


def facts_world(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """Vectors that carry decade and genres linearly (as MiniLM movie vectors do), plus noise."""
    rng = np.random.default_rng(seed)
    decades = rng.choice([1950, 1970, 1990, 2000], n)
    genres = [sorted(rng.choice(GENRES, rng.integers(1, 3), replace=False).tolist()) for _ in range(n)]
    basis = rng.normal(size=(4 + len(GENRES), dim))
    onehot = np.zeros((n, 4 + len(GENRES)))
    onehot[np.arange(n), np.searchsorted([1950, 1970, 1990, 2000], decades)] = 1
    for i, g in enumerate(genres):
        onehot[i, [4 + GENRES.index(x) for x in g]] = 1
    vectors = onehot @ basis + 0.1 * rng.normal(size=(n, dim))
    return vectors.astype(np.float32), pd.DataFrame({"year": decades + 5, "genres": genres})


def test_held_out_vectors_read_as_their_captions(tiny_lm_dir):
    dim = 48
    space = SpaceSpec("semantic_movies", "movie", dim, "semantic/test")
    torch.manual_seed(0)
    elm = ELM.from_base(ELMConfig(spaces=(space,), base_model=str(tiny_lm_dir), adapter={"soft_tokens": 8}))
    vectors, movies = facts_world(700, dim)
    fit, held = slice(0, 600), slice(600, 700)
    emb = elm.lm.get_input_embeddings().weight.detach()

    def slot_accuracy() -> float:
        with torch.no_grad():
            out = elm.adapters[space.name](torch.from_numpy(vectors[held]))  # [n, 8, hidden]
        nearest = (torch.nn.functional.normalize(out, dim=-1)
                   @ torch.nn.functional.normalize(emb, dim=-1).T).argmax(-1)
        want = caption_token_ids(elm.tokenizer, [movie_caption(y, g) for y, g in
                                                 zip(movies["year"][held], movies["genres"][held])], 8)
        return (nearest == want).float().mean().item()

    before = slot_accuracy()
    captions = [movie_caption(y, g) for y, g in zip(movies["year"][fit], movies["genres"][fit])]
    info = warm_start_adapter(elm, space.name, vectors[fit], captions)
    after = slot_accuracy()
    assert before < 0.05 and after > 0.9, (before, after)  # movies it never saw: their facts, as tokens
    assert info["entities"] == 600 and info["soft_tokens"] == 8 and info["r2"] > 0.5


def test_a_learned_hidden_layer_fits_the_captions_closer_and_is_reproducible(tiny_lm_dir):
    dim = 48
    space = SpaceSpec("semantic_movies", "movie", dim, "semantic/test")
    vectors, movies = facts_world(400, dim)
    captions = [movie_caption(y, g) for y, g in zip(movies["year"], movies["genres"])]

    def fitted(epochs: int):
        torch.manual_seed(0)
        elm = ELM.from_base(ELMConfig(spaces=(space,), base_model=str(tiny_lm_dir), adapter={"soft_tokens": 8}))
        first = elm.adapters[space.name].mlp[0].weight.detach().clone()
        info = warm_start_adapter(elm, space.name, vectors, captions, epochs=epochs, seed=3)
        return info, first, elm.adapters[space.name].mlp[0].weight.detach().clone()

    (rand, w0, w_rand), (learned, w0b, w_learned), (again, _, w_again) = fitted(0), fitted(30), fitted(30)
    assert torch.equal(w0, w_rand) and torch.equal(w0, w0b)  # 0 epochs: the random hidden layer is kept
    assert not torch.allclose(w_learned, w0)  # epochs > 0: it is learned
    assert learned["r2"] > rand["r2"] and learned["epochs"] == 30, (rand, learned)
    assert torch.equal(w_learned, w_again)  # seeded: the same fit every time


def test_a_warm_started_adapter_trains_at_the_lms_rate_a_random_one_at_adapter_lr(tiny_lm_dir):
    """At adapter_lr the warm-started movie adapter drifted off its captions within stage 2; the user
    adapter, which starts random, still needs the higher rate."""
    from elm.train.config import StageConfig
    from elm.train.loop import _optimizer

    movie = SpaceSpec("semantic_movies", "movie", 48, "semantic/test")
    user = SpaceSpec("behavioral_users", "user", 16, "behavioral/test")
    elm = ELM.from_base(ELMConfig(spaces=(movie, user), base_model=str(tiny_lm_dir)))
    opt, _ = _optimizer(elm, StageConfig(steps=4, lr=1e-4, adapter_lr=1e-3), warm=(movie.name,))
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert {lr_of[id(p)] for p in elm.adapters[movie.name].parameters()} == {1e-4}
    assert {lr_of[id(p)] for p in elm.adapters[user.name].parameters()} == {1e-3}
    assert {lr_of[id(p)] for p in elm.lm.parameters()} == {1e-4}


def test_a_user_caption_is_the_first_words_of_the_favourites():
    liked = ["The Shawshank Redemption (1994)", "Pulp Fiction (1994)", "A Fish Called Wanda (1988)", "Heat (1995)"]
    assert user_caption(liked[:3]) == " Shawshank Redemption Pulp Fiction Fish Called"
    assert user_caption(liked[3:]) == " Heat"
    assert user_caption([]) == ""


def test_a_user_caption_names_the_films_the_cf_model_scores_highest_for_the_user():
    items = np.array([10, 20, 30, 40])
    factors = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7], [-1.0, 0.0]])
    titles = {10: "The Matrix (1999)", 20: "Amelie (2001)", 30: "Heat (1995)", 40: "Fargo (1996)"}
    users = np.array([[1.0, 0.1], [-1.0, 0.5]])
    assert user_captions(users, items, factors, titles, n=2) == [" Matrix Heat", " Fargo Amelie"]
