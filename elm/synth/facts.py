"""The grounding metadata of entities: what a teacher may say about a movie or a user.

    movie_facts(movies, tags)   ->  movieId, name, title, year, genres, tags, themes, facts
                                    facts = "Title: Toy Story. Year: 1995. Genres: Adventure, .... Tags: pixar, fun."
    user_facts(ratings, movies) ->  userId, liked, disliked, n_ratings, mean_rating, top_genres, facts

Teachers see only these columns, so whatever a target text claims should be traceable to them (an LLM
teacher also knows the film by its title; the template teacher knows nothing else). Every ordering here
has a full tie-break, so reruns produce the same facts and therefore the same targets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# A viewing format, not a genre: it says nothing about a user's taste.
NOT_A_GENRE = frozenset({"IMAX", "(no genres listed)"})


def _require(df: pd.DataFrame | None, name: str, columns: tuple[str, ...], allow_empty: bool = False) -> None:
    if df is None:
        raise ValueError(f"{name} table is required")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} table is missing column(s) {missing} (has {list(df.columns)})")
    if not allow_empty and len(df) == 0:
        raise ValueError(f"{name} table is empty")


def _as_list(x) -> list:
    return [] if x is None or (not isinstance(x, (list, tuple, np.ndarray)) and pd.isna(x)) else list(x)


def _lists(values) -> list[list]:
    """Plain Python lists (a column of them stays object dtype, not a pyarrow list type)."""
    return [_as_list(x) for x in values]


def _titles(movies: pd.DataFrame) -> pd.Series:
    """movieId-indexed "Name (year)", the normalised name ("The Matrix"), year only when known."""
    year = movies["year"].map(lambda y: "" if pd.isna(y) else f" ({int(y)})")
    return pd.Series((movies["name"].astype(str).str.strip() + year).to_numpy(), index=movies["movieId"].to_numpy())


# -----------------------------------------------------------------------------
# movies


def _top_tags(tags: pd.DataFrame, k: int) -> pd.Series:
    """movieId -> list of the k tags most users gave it; ties alphabetical so reruns agree."""
    t = pd.DataFrame({"userId": tags["userId"], "movieId": tags["movieId"],
                      "tag": tags["tag"].astype("string").str.strip().str.lower().str.replace(r"\s+", " ", regex=True)})
    t = t[t["tag"].notna() & (t["tag"] != "")]
    # Count users, not rows: one user typing the same tag twice is not two opinions.
    counts = t.drop_duplicates().groupby(["movieId", "tag"], sort=False).size().rename("n").reset_index()
    counts = counts.sort_values(["movieId", "n", "tag"], ascending=[True, False, True])
    return counts.groupby("movieId", sort=False).head(k).groupby("movieId", sort=False)["tag"].agg(list)


def _top_genome(scores: pd.DataFrame, genome_tags: pd.DataFrame, k: int) -> pd.Series:
    """movieId -> list of the k most relevant tag-genome tags (ties by tagId)."""
    top = scores.sort_values(["movieId", "relevance", "tagId"], ascending=[True, False, True])
    top = top.groupby("movieId", sort=False).head(k).merge(genome_tags[["tagId", "tag"]], on="tagId", how="left")
    return top.dropna(subset=["tag"]).groupby("movieId", sort=False)["tag"].agg(list)


def movie_facts(
    movies: pd.DataFrame,
    tags: pd.DataFrame | None = None,
    genome_scores: pd.DataFrame | None = None,
    genome_tags: pd.DataFrame | None = None,
    max_tags: int = 8,
) -> pd.DataFrame:
    """One row per movie, in movieId order. tags may be None or empty (a release without tags).

    Columns: movieId, name, title ("Name (year)"), year (Int64, <NA> when unknown), genres (list),
    tags (list, most-used user tags, lowercased), themes (list, top tag-genome tags; empty without a genome),
    facts (one line of text, empty parts skipped).
    """
    _require(movies, "movies", ("movieId", "name", "year", "genres"))
    if max_tags < 0:
        raise ValueError(f"max_tags must be >= 0, got {max_tags}")
    m = movies.sort_values("movieId").reset_index(drop=True)
    ids = m["movieId"]
    out = pd.DataFrame({
        "movieId": ids.astype("int32"),
        "name": m["name"].astype(str).str.strip(),
        "title": _titles(m).to_numpy(),
        "year": m["year"].round().astype("Int64"),
        "genres": pd.Series([[g for g in gs if g != "(no genres listed)"] for gs in _lists(m["genres"])], dtype=object),
    })
    for col in ("tags", "themes"):
        out[col] = pd.Series([[] for _ in range(len(m))], dtype=object)
    if tags is not None and len(tags) and max_tags > 0:
        _require(tags, "tags", ("userId", "movieId", "tag"))
        out["tags"] = pd.Series(_lists(ids.map(_top_tags(tags, max_tags))), dtype=object)
    if genome_scores is not None and genome_tags is not None and len(genome_scores) and max_tags > 0:
        _require(genome_scores, "genome_scores", ("movieId", "tagId", "relevance"))
        _require(genome_tags, "genome_tags", ("tagId", "tag"))
        out["themes"] = pd.Series(_lists(ids.map(_top_genome(genome_scores, genome_tags, max_tags))), dtype=object)

    def line(name, year, genres, tags, themes) -> str:
        parts = [f"Title: {name}", f"Year: {year}" if not pd.isna(year) else "",
                 f"Genres: {', '.join(genres)}" if genres else "", f"Tags: {', '.join(tags)}" if tags else "",
                 f"Themes: {', '.join(themes)}" if themes else ""]
        return " ".join(p + "." for p in parts if p)

    out["facts"] = [line(*row) for row in zip(out["name"], out["year"], out["genres"], out["tags"], out["themes"])]
    return out


# -----------------------------------------------------------------------------
# users


def _top_genres(ratings: pd.DataFrame, movies: pd.DataFrame, k: int = 3, min_rating: float = 4.0) -> pd.Series:
    """userId -> up to k genres most common among the user's ratings >= min_rating (ties alphabetical).

    One bincount per genre over the liked ratings, instead of exploding ratings x genres: that table has
    tens of millions of rows on ml-25m.
    """
    genres = sorted({g for gs in movies["genres"] for g in _as_list(gs)} - NOT_A_GENRE)
    liked = ratings[ratings["rating"] >= min_rating]
    if not genres or liked.empty:
        return pd.Series(dtype=object)
    users, u_idx = np.unique(liked["userId"].to_numpy(), return_inverse=True)
    has = np.zeros((len(movies), len(genres)), dtype=np.float64)
    col = {g: j for j, g in enumerate(genres)}
    for i, gs in enumerate(movies["genres"]):
        for g in _as_list(gs):
            if g in col:
                has[i, col[g]] = 1.0
    m_idx = pd.Index(movies["movieId"]).get_indexer(liked["movieId"])
    keep = m_idx >= 0  # a rating of a movie missing from the movies table has no genres
    counts = np.stack([np.bincount(u_idx[keep], weights=has[m_idx[keep], j], minlength=len(users))
                       for j in range(len(genres))], axis=1)
    order = np.argsort(-counts, axis=1, kind="stable")[:, :k]  # stable: equal counts stay alphabetical
    top = [[genres[j] for j in row if counts[r, j] > 0] for r, row in enumerate(order)]
    return pd.Series(top, index=users)


def user_facts(ratings: pd.DataFrame, movies: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """One row per user, in userId order.

    Columns: userId, liked (up to n "Name (year)" rated highest; ties: the movies most rated in ``ratings``
    first, then most recent, then movieId),
    disliked (up to n rated lowest among ratings <= 2.5 and not already in liked; may be empty),
    n_ratings, mean_rating, top_genres (up to 3, most common among ratings >= 4), and facts (one line:
    the counts and top genres, i.e. what liked/disliked do not already say).
    """
    _require(ratings, "ratings", ("userId", "movieId", "rating", "timestamp"))
    _require(movies, "movies", ("movieId", "name", "year", "genres"))
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    titles = _titles(movies)
    r = ratings[["userId", "movieId", "rating", "timestamp"]]

    # Among equally rated films, the best known first: a reader recognises them, and the CF model, which
    # learns from the same ratings, ranks them high for this user too (a profile naming the most recent of
    # a user's 5-star films scored BC 0.215 on held-out users, naming the best known 0.319, random 0.038).
    popularity = r["movieId"].map(r["movieId"].value_counts())
    best = r.assign(_n=popularity).sort_values(["userId", "rating", "_n", "timestamp", "movieId"],
                                               ascending=[True, False, False, False, True])
    best = best.groupby("userId", sort=False).head(n)
    worst = r[r["rating"] <= 2.5].sort_values(["userId", "rating", "timestamp", "movieId"],
                                              ascending=[True, True, False, True])
    # A user whose every rating is low would otherwise "like" and "dislike" the same films.
    worst = worst[~pd.MultiIndex.from_frame(worst[["userId", "movieId"]]).isin(
        pd.MultiIndex.from_frame(best[["userId", "movieId"]]))]
    worst = worst.groupby("userId", sort=False).head(n)

    def titled(df: pd.DataFrame) -> pd.Series:
        return df.assign(t=df["movieId"].map(titles)).dropna(subset=["t"]).groupby("userId", sort=False)["t"].agg(list)

    # float64: half-star sums are then exact, so the mean does not depend on row order (float32 sums do).
    stats = r["rating"].astype("float64").groupby(r["userId"]).agg(n_ratings="size", mean_rating="mean")
    users = stats.index
    out = pd.DataFrame({
        "userId": users.astype("int32"),
        "liked": pd.Series(_lists(users.map(titled(best))), dtype=object),
        "disliked": pd.Series(_lists(users.map(titled(worst))), dtype=object),
        "n_ratings": stats["n_ratings"].to_numpy().astype("int64"),
        "mean_rating": stats["mean_rating"].to_numpy().astype("float64"),
        "top_genres": pd.Series(_lists(users.map(_top_genres(r, movies))), dtype=object),
    })
    out["facts"] = [f"Rated {k} movies, mean rating {mu:.1f} of 5."
                    + (f" Favourite genres: {', '.join(g)}." if g else "")
                    for k, mu, g in zip(out["n_ratings"], out["mean_rating"], out["top_genres"])]
    return out
