from elm.sql import connect, views


def test_views_and_manifests_over_the_store(small_ingest):
    store, art = small_ingest
    con = connect(store)
    names = views(con)
    assert {"ingest_ratings", "ingest_movies", "ingest_tags", "ingest_links", "ingest_ratings_all", "manifests"} <= set(names)
    assert con.execute("select count(*) from ingest_ratings").fetchone()[0] == 100836
    top = con.execute(
        "select m.name, count(*) n from ingest_ratings r join ingest_movies m using (movieId) group by 1 order by 2 desc limit 1"
    ).fetchone()
    assert top == ("Forrest Gump", 329)
    row = con.execute("select version, is_latest, summary->>'$.rows.ratings' from manifests where stage='ingest'").fetchall()
    assert (art.version, True, "100836") in row
