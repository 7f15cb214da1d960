"""Semantic consistency (SC), docs/METHOD.md "Metrics": how well a text matches a semantic vector.

    SC(text, w) = cos(encoder(text), w)

with the very encoder that made the semantic movie vectors (semantic.load_encoder). For a text about two
movies the vector is their normalised mean (for an interpolation at weight a: the interpolated vector).
SC is reported next to two references measured the same way: random (the text of a random other entity
against this entity's vector) and truth (the teacher's text), and as normalised SC =
(SC - random) / (truth - random). Every stage that scores text uses these functions.
"""

from __future__ import annotations

import numpy as np

from elm.embed.semantic import DEFAULT_ENCODER, encode, load_encoder
from elm.vectors import unit_rows


def unit(m: np.ndarray) -> np.ndarray:
    """Unit rows in float32, the precision every SC is computed in."""
    return unit_rows(m, np.float32)


def mix(a: np.ndarray, b: np.ndarray, weight: float | np.ndarray = 0.5) -> np.ndarray:
    """(1 - weight) * a + weight * b, rows normalised: the vector a two-movie text is scored against."""
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim == 1:
        w = w[:, None]
    return unit((1 - w) * unit(a) + w * unit(b))


def encode_texts(texts: list[str], encoder: str | object = DEFAULT_ENCODER, batch_size: int = 64) -> np.ndarray:
    """Unit-norm encodings of texts [n, dim]; encode once, then score against as many vectors as needed."""
    model = load_encoder(encoder) if isinstance(encoder, str) else encoder
    if not len(texts):
        return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
    return encode(list(texts), model, batch_size=batch_size, progress=len(texts) > 256)


def cosine_rows(encoded: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Row-wise cosine of encoded texts and vectors: float32 [n]."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != encoded.shape[0]:
        raise ValueError(f"SC: {encoded.shape[0]} texts but vectors of shape {vectors.shape}")
    if vectors.shape[1] != encoded.shape[1]:
        raise ValueError(f"SC: vectors have dimension {vectors.shape[1]}, the encoder makes {encoded.shape[1]}: "
                         "score against the semantic space made by this encoder")
    return np.einsum("ij,ij->i", unit(encoded), unit(vectors)).astype(np.float32)


def semantic_consistency(texts: list[str], vectors: np.ndarray, encoder: str | object = DEFAULT_ENCODER,
                         batch_size: int = 64) -> np.ndarray:
    """SC of each text against the vector in the same row: float32 [n]."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise ValueError(f"semantic_consistency: {len(texts)} texts but vectors of shape {vectors.shape}")
    return cosine_rows(encode_texts(texts, encoder, batch_size), vectors)


def random_partner(n: int, seed: int = 0) -> np.ndarray:
    """A derangement of range(n): row i is scored against row out[i] != i (the random reference)."""
    if n < 2:
        raise ValueError(f"the random reference needs at least 2 entities, got {n}")
    rng = np.random.default_rng(seed)
    shift = rng.integers(1, n, size=1)[0]
    perm = rng.permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[perm] = perm[(np.arange(n) + shift) % n]  # a cyclic shift over a random order: never a fixed point
    return out


def others_mean(encoded: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Each text's mean cosine against every other row's vector: the shuffled reference, averaged over all
    shufflings rather than drawn once (one draw made it the noisiest number of the headline). For the ELM
    it is also the shuffled-input control: decoding is greedy, so its text for row j is the text it writes
    when given row j's vector, and scoring that against row i is that control."""
    m = len(encoded)
    if m < 2:
        return np.full(m, np.nan, dtype=np.float32)
    sims = unit(encoded) @ unit(vectors).T
    return ((sims.sum(axis=1) - np.diag(sims)) / (m - 1)).astype(np.float32)


MIN_REFERENCE_GAP = 0.005
"""Below this gap between truth and random, a normalised score is noise divided by noise (e.g. -114 for two
training users whose teacher profiles rank movies no better than chance): reported as NaN instead."""


def normalised(score: float, random: float, truth: float, min_gap: float = MIN_REFERENCE_GAP) -> float:
    """(score - random) / (truth - random); NaN when the references are within min_gap of each other."""
    gap = truth - random
    return float("nan") if not abs(gap) >= min_gap else float((score - random) / gap)
