"""Typed dataclass configs from JSON: one strict reading rule for every config the pipeline saves.

A config read back from a file (a saved model, a flow parameter, ``--config``) must fail on a field it
does not know, naming it and the known ones: a typo would otherwise silently leave a default in place.
"""

from __future__ import annotations

from dataclasses import fields


def known_fields(cls, d: dict) -> dict:
    """``d`` unchanged when every key is a field of the dataclass ``cls``; else ValueError naming the rest."""
    known = {f.name for f in fields(cls)}
    if unknown := sorted(set(d) - known):
        raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(known)}")
    return dict(d)
