import duckdb
import numpy as np
import pytest

from elm import vectors as vec
from elm.embed.splits import HELDOUT, TRAIN, assign, split_table


def test_split_is_seeded_stable_and_disjoint():
    ids = np.arange(1, 20001)
    a = split_table(ids, "movieId", 0.1, seed=0, salt=1)
    b = split_table(ids, "movieId", 0.1, seed=0, salt=1)
    assert a.equals(b)
    assert set(a["split"]) == {TRAIN, HELDOUT} and a["movieId"].is_unique  # one side per id: no overlap
    assert 0.08 < (a["split"] == HELDOUT).mean() < 0.12
    # growing the catalog never moves an existing id
    grown = split_table(np.arange(1, 40001), "movieId", 0.1, seed=0, salt=1).set_index("movieId")["split"]
    assert (grown.loc[a["movieId"]].to_numpy() == a["split"].to_numpy()).all()
    other_seed = split_table(ids, "movieId", 0.1, seed=1, salt=1)
    assert not other_seed["split"].equals(a["split"])


def test_split_rejects_bad_fraction():
    with pytest.raises(ValueError, match="heldout_fraction"):
        assign([1, 2, 3], 1.5, seed=0)


def _vectors(n=5, d=4, seed=0):
    rng = np.random.default_rng(seed)
    return vec.Vectors("movieId", np.arange(10, 10 + n), rng.normal(size=(n, d)).astype(np.float32))


def test_vector_parquet_round_trip_and_duckdb_cosine(tmp_path):
    v = _vectors()
    path = vec.write(tmp_path / "movies.parquet", v)
    back = vec.read(path, expected_dim=4)
    assert back.matrix.dtype == np.float32 and np.array_equal(back.matrix, v.matrix)
    assert back.ids.tolist() == v.ids.tolist()
    con = duckdb.connect()
    rows = con.execute(
        f"select b.movieId, list_cosine_similarity(a.vector::FLOAT[], b.vector::FLOAT[]) s "
        f"from '{path}' a, '{path}' b where a.movieId = 10 order by s desc limit 2"
    ).fetchall()
    assert rows[0][0] == 10 and rows[0][1] == pytest.approx(1.0, abs=1e-5)
    assert rows[1][0] == v.nearest(v.get([10])[0], n=1, exclude={10})[0][0]


def test_vector_validation_errors(tmp_path):
    v = _vectors()
    v.matrix[2, 1] = np.nan
    with pytest.raises(vec.VectorError, match="NaN/inf.*movieId \\[12\\]"):
        vec.validate(v, what="test vectors")
    with pytest.raises(vec.VectorError, match="dimension 4, expected 8"):
        vec.validate(_vectors(), what="test vectors", expected_dim=8)
    dup = _vectors()
    dup.ids[1] = dup.ids[0]
    with pytest.raises(vec.VectorError, match="duplicate"):
        vec.validate(dup, what="test vectors")
    with pytest.raises(vec.VectorError, match="not in the ingested tables.*14"):
        vec.validate(_vectors(), what="test vectors", known_ids=[10, 11, 12, 13])
    path = vec.write(tmp_path / "m.parquet", _vectors())
    with pytest.raises(vec.VectorError, match="dimension 4, expected 64"):
        vec.read(path, expected_dim=64)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(vec.VectorError, match="m.parquet: not a readable Parquet"):
        vec.read(path)
    with pytest.raises(KeyError, match="unknown movieId.*99"):
        _vectors().get([10, 99])
