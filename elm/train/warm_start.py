"""Stage 0: start an adapter where the LM can already read it, in closed form, before any gradient step.

Why: a randomly initialised adapter gives the frozen LM soft tokens it has never seen. Gradient steps then
lower the loss fastest by teaching the shared form of the targets ("A film from the ... that combines ..."),
and a CPU budget of a few hundred steps ends there: the text ignores the vector. Yet the facts the targets
state are linearly readable from the vectors (a logistic probe on MiniLM movie vectors gets the decade of
held-out movies 96% right and their genres with F1 0.92).

So, as LLaVA aligns its projector on captions before instruction tuning, the adapter is aligned on
captions first, but without training: every training-split movie gets a caption made of its facts,

    " 1994 comedy romance"   ->  tokens  ␣ 1 9 9 4 ␣comedy ␣romance ␣film  (padded to soft_tokens)

and the adapter's last layer is fitted by ridge regression so that its soft tokens for the movie's vector
are the LM's input embeddings of those caption tokens. That is one linear solve over all training movies:
seconds on a CPU, and it uses every movie of the catalog, not the few hundred the step budget lets training
see. Held-out movies are never used. With ``epochs`` > 0 the whole MLP is first fitted to the same targets by
gradient descent, so the hidden layer holds learned features rather than random ones (TrainConfig.
warm_start_epochs); the last layer is then solved as before.
The LM then reads a held-out movie's vector as (nearly) the words of its caption; training teaches it to
say them in the tasks' forms.

A user vector is a point of the CF model, and what it says is which films the model predicts the user likes.
So a user's caption is the first words of the three films among the catalog's best known (POPULAR_POOL) that
the CF model scores highest for the user ("Shawshank Redemption Schindler's List Pulp Fiction"): a function
of the vector, as a movie's caption is of its facts. Titles, because they are what makes a profile rank
movies the way the CF model does (genre words alone rank them at random). A caption of the user's own
favourites does not transfer: fitted on 548 training users, 7% of held-out soft tokens read as their
caption's token, below the 15% of always guessing each position's most common one; this caption, 25% (14%).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from elm.metrics.facts import decade_of

log = logging.getLogger(__name__)

GENRE_WORDS = {"Sci-Fi": "sci-fi", "Children": "family", "Film-Noir": "noir", "(no genres listed)": None}
"""How a MovieLens genre is said in a caption (lower-cased name otherwise). Not the template teacher's nouns
(template_genres.py): those run to two words ("family entertainment"), and a caption has one soft token per
word to spare."""
PAD_WORD = " film"
"""Fills the soft tokens a short caption leaves free."""


def movie_caption(year, genres: Sequence[str]) -> str:
    """The facts a movie vector should carry, as words: " 1994 comedy romance" (no title: the ELM must not
    recall titles; the year is left out when it is unknown).

    The year, not the decade: a logistic probe reads the exact year of 95% of held-out MiniLM movie vectors
    (the semantic documents begin "Forrest Gump (1994)"), and " 1994" takes a token fewer than " 1990s".
    With the decade only, the ELM invented the years the targets state ("Released in 1990" for Amadeus, 1984):
    2 of 54 stated years were right; with the year, 34 of 53 (docs/METHOD.md, "Training")."""
    words = [GENRE_WORDS.get(g, str(g).lower()) for g in (genres if genres is not None else [])]
    return (f" {int(year)}" if decade_of(year) is not None else "") + "".join(f" {w}" for w in words if w)


def caption_token_ids(tokenizer, captions: Sequence[str], k: int) -> torch.Tensor:
    """[n, k] token ids of each caption, cut or padded with PAD_WORD to k."""
    pad = tokenizer(PAD_WORD, add_special_tokens=False).input_ids[-1]
    out = []
    for c in captions:
        ids = tokenizer(c, add_special_tokens=False).input_ids
        if ids and tokenizer.decode(ids[:1]).strip() == "":  # a lone leading space token carries nothing
            ids = ids[1:]
        out.append((ids + [pad] * k)[:k])
    return torch.tensor(out, dtype=torch.long)


def fit_hidden_layers(adapter, x: torch.Tensor, target: torch.Tensor, epochs: int, seed: int = 0,
                      batch_size: int = 256, lr: float = 1e-3) -> None:
    """Adam on the mean squared error between adapter(x) and target [n, k, hidden], every layer trained."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(adapter.parameters(), lr=lr)
    was_training = adapter.training
    adapter.train()
    for _ in tqdm(range(epochs), desc="warm start", unit="epoch", leave=False):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            j = order[i:i + batch_size].to(x.device)
            loss = (adapter(x[j]).float() - target[j]).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    adapter.train(was_training)


@torch.no_grad()
def fit_adapter_to_captions(adapter, vectors: np.ndarray, token_ids: torch.Tensor, embeddings: torch.Tensor,
                            ridge: float = 1.0, epochs: int = 0, seed: int = 0) -> float:
    """Set the adapter's last layer so that adapter(vectors) ~ embeddings[token_ids] (ridge regression on
    the hidden features, learned first for ``epochs`` epochs when > 0); returns the fraction of the targets'
    variance explained on the fitting rows."""
    # On the adapter's device (a GPU run moves the ELM there before the warm start).
    x = torch.as_tensor(np.asarray(vectors), dtype=torch.float32, device=adapter.last.weight.device)
    tokens = embeddings.detach().float()[token_ids.to(embeddings.device)]  # [n, k, hidden]
    if epochs:
        with torch.enable_grad():
            fit_hidden_layers(adapter, x, tokens, epochs, seed)
    w_dtype = adapter.last.weight.dtype
    feats = adapter.mlp[:-1](adapter.normalize(x.to(w_dtype))).float()
    feats = torch.cat([feats, torch.ones(len(feats), 1, device=feats.device)], dim=1)
    target = tokens.reshape(len(x), -1)  # [n, k * hidden]
    gram = feats.T @ feats
    gram += ridge * torch.eye(len(gram), device=gram.device)
    gram[-1, -1] -= ridge  # the bias is not shrunk
    w = torch.linalg.solve(gram, feats.T @ target)
    adapter.last.weight.copy_(w[:-1].T.to(w_dtype))
    adapter.last.bias.copy_(w[-1].to(w_dtype))
    resid = (feats @ w - target).pow(2).sum().item()
    total = (target - target.mean(0)).pow(2).sum().item()
    return 1.0 - resid / total if total > 0 and math.isfinite(resid) else math.nan


def user_caption(liked: Sequence[str], per_title: int = 2) -> str:
    """The favourites a user vector should carry, as words: the first ``per_title`` words of each title, year
    and leading article dropped (["The Shawshank Redemption (1994)", "Pulp Fiction (1994)"] ->
    " Shawshank Redemption Pulp Fiction"): a title's first words are what names it."""
    words = []
    for title in liked if liked is not None else []:
        name = re.sub(r"\s*\(\d{4}\)\s*$", "", str(title)).strip()
        name = re.sub(r"^(the|a|an)\s+", "", name, flags=re.IGNORECASE)
        words += name.split()[:per_title]
    return "".join(f" {w}" for w in words)


POPULAR_POOL = 300
"""The most-rated films a user caption may name."""


def user_captions(user_vectors: np.ndarray, item_ids: np.ndarray, item_factors: np.ndarray, titles: dict,
                  n: int = 3) -> list[str]:
    """For each user vector, the caption of the n films of ``item_ids`` with the highest CF score
    (x_u . y_j, the model's predicted preference)."""
    scores = np.asarray(user_vectors, dtype=np.float32) @ np.asarray(item_factors, dtype=np.float32).T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    return [user_caption([titles[item_ids[j]] for j in row]) for row in top]


def warm_start_adapter(elm, space: str, vectors: np.ndarray, captions: Sequence[str], ridge: float = 1.0,
                       epochs: int = 0, seed: int = 0) -> dict:
    """Fit ``elm.adapters[space]`` to ``captions`` (one per row of ``vectors``). Returns what the log and the
    train summary report."""
    adapter = elm.adapters[space]
    k = adapter.cfg.soft_tokens
    ids = caption_token_ids(elm.tokenizer, captions, k)
    t0 = time.perf_counter()
    r2 = fit_adapter_to_captions(adapter, vectors, ids, elm.lm.get_input_embeddings().weight, ridge, epochs, seed)
    log.info("warm start: %s adapter fitted to the captions of %d training entities (%d soft tokens, %s, "
             "R^2 %.2f, %.0f s), e.g. %r", space, len(captions), k,
             f"hidden layer learned in {epochs} epochs" if epochs else "random hidden layer", r2,
             time.perf_counter() - t0, captions[0].strip())
    return {"space": space, "entities": len(captions), "soft_tokens": k, "r2": round(r2, 3), "ridge": ridge,
            "epochs": epochs}

