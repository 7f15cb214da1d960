"""``elm explore``: a local web page to walk an ELM's embedding spaces and ask it about any point.

projection.py (the 2-D map of a space, its own artifact), catalog.py (what the page shows without the model:
points, titles, splits, teacher and baseline texts, users), points.py (a request's point -> a vector),
streaming.py (token-by-token text of a batched generate call), engine.py (the model, loaded in the background,
and the queue that batches requests), app.py (the HTTP API and the page), static/ (the page itself).
"""
