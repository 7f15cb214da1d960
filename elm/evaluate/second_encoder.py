"""SC a second time, with an encoder that did not make the vectors the ELM reads.

The ELM reads MiniLM vectors, and SC scores its text with MiniLM: a text can score well by echoing what
MiniLM likes rather than by saying what the movie is. So the held-out movie rows of the generalisation
experiment are scored again with another encoder (all-mpnet-base-v2 by default: another architecture, twice
the width, shipped in other packages): each text against that encoder's embedding of its movie's semantic
document (documents.parquet of the semantic artifact, the very text the first vectors were made from).

    sc2          SC under the second encoder (NaN on the rows it does not score)
    sc2_random   the text's mean SC2 against every other row's movie (others_mean)

controls.py turns them into a second set of SC controls; the report flags a conclusion that holds under
one encoder only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from elm.evaluate.controls import heldout_movie_rows
from elm.metrics.semantic_consistency import cosine_rows, encode_texts, mix, others_mean

COLUMNS = ("sc2", "sc2_random")


def second_encoder_scores(gens: pd.DataFrame, documents: pd.DataFrame, encoder) -> pd.DataFrame:
    """gens with sc2 and sc2_random filled on the scored rows (encoder: a loaded SentenceTransformer)."""
    out = gens.copy()
    for col in COLUMNS:
        out[col] = np.nan
    rows = out.index[heldout_movie_rows(out)]
    if not len(rows):
        return out
    d = out.loc[rows]
    ids = pd.unique(pd.concat([d["entity_id"].astype("int64"), d["partner_id"].dropna().astype("int64")]))
    docs = documents.set_index("movieId")["document"]
    missing = [int(i) for i in ids if i not in docs.index]
    if missing:
        raise ValueError(f"second SC encoder: no semantic document for movie(s) {missing[:5]}")
    doc_vec = dict(zip(ids, encode_texts([str(docs[i]) for i in ids], encoder)))
    text_vec = encode_texts(d["output"].fillna("").astype(str).tolist(), encoder)

    def target(e, p) -> np.ndarray:
        v = doc_vec[int(e)][None]
        return (mix(v, doc_vec[int(p)][None]) if pd.notna(p) else v)[0]

    targets = np.stack([target(e, p) for e, p in zip(d["entity_id"], d["partner_id"])])
    out.loc[rows, "sc2"] = cosine_rows(text_vec, targets)
    pos = pd.Series(np.arange(len(rows)), index=rows)
    for _, g in d.groupby(["system", "task"], sort=False):
        i = pos[g.index].to_numpy()
        out.loc[g.index, "sc2_random"] = others_mean(text_vec[i], targets[i])
    return out
