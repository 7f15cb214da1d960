"""The template teacher's words for each MovieLens genre: how it is named in prose, what a movie of it can
claim and be blamed for, who enjoys it, and how a child would be told about it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Genre:
    """What the template may say about a movie of one genre."""

    noun: str
    """How the genre is named in prose."""
    strength: str
    """A virtue movies of the genre can claim."""
    weakness: str
    """A flaw movies of the genre are often blamed for."""
    audience: str
    """Who tends to enjoy it."""
    child: str
    """How a ten-year-old would be told about it."""


GENRES: dict[str, Genre] = {
    "Action": Genre("action", "energetic, well-staged action", "action that can feel noisy and repetitive",
                    "viewers who like adrenaline", "has exciting chases and fights"),
    "Adventure": Genre("adventure", "a real sense of adventure and discovery",
                       "a quest structure that can feel familiar", "fans of grand adventures", "goes on a big adventure"),
    "Animation": Genre("animation", "inventive, colourful animation", "a cartoon style that not every adult warms to",
                       "lovers of animated films", "is a cartoon"),
    "Children": Genre("family entertainment", "warmth that works for the whole family",
                      "a simplicity some adults may find too soft", "families with children", "is made for kids"),
    "Comedy": Genre("comedy", "plenty of laughs", "jokes that do not always land", "anyone who wants a good laugh",
                    "has lots of funny parts"),
    "Crime": Genre("crime", "a gripping look at the criminal world", "crime-story conventions it rarely escapes",
                   "fans of crime stories", "is about catching bad guys"),
    "Documentary": Genre("documentary", "real-world insight", "a factual pace that can feel slow",
                         "viewers curious about real events", "shows real people and true events"),
    "Drama": Genre("drama", "emotionally engaging characters", "heavy dramatic stretches",
                   "viewers who like character-driven stories", "shows people with big feelings"),
    "Fantasy": Genre("fantasy", "imaginative world-building", "fantastical logic that asks a lot of belief",
                     "fans of fantasy", "has magic and make-believe"),
    "Film-Noir": Genre("film noir", "a moody, shadowy atmosphere", "a bleak, cynical tone", "fans of classic noir",
                       "is a dark detective story"),
    "Horror": Genre("horror", "genuine scares", "gore and dread that will put off the squeamish", "horror fans",
                    "is very scary, so it is for grown-ups"),
    "Musical": Genre("music", "memorable songs", "musical numbers that interrupt the story", "lovers of musicals",
                     "has lots of songs"),
    "Mystery": Genre("mystery", "an intriguing puzzle", "a twisty plot that can be hard to follow",
                     "viewers who love a puzzle", "has a mystery to solve"),
    "Romance": Genre("romance", "a touching love story", "romantic clichés", "fans of love stories",
                     "is about people falling in love"),
    "Sci-Fi": Genre("science fiction", "thought-provoking science-fiction ideas", "ideas that are not fully explored",
                    "science-fiction fans", "has future technology"),
    "Thriller": Genre("suspense", "taut suspense", "twists that can feel contrived", "fans of thrillers",
                      "keeps you on the edge of your seat"),
    "War": Genre("war", "a powerful portrait of conflict", "harrowing violence", "viewers interested in history",
                 "is about soldiers in a war"),
    "Western": Genre("western", "sweeping frontier atmosphere", "a slow, old-fashioned pace", "fans of westerns",
                     "has cowboys"),
}

# When the facts run short: generic, so they claim nothing specific about the movie.
FALLBACK_STRENGTHS = ("a distinctive tone", "a story that keeps moving", "a clear point of view")
FALLBACK_WEAKNESSES = ("a pace that will not suit every viewer", "a tone that can feel uneven", "moments that drag")


def genre_info(genre: str) -> Genre:
    """Known genres from GENRES; any other (another dataset's) gets generic wording built from its name."""
    if genre in GENRES:
        return GENRES[genre]
    g = genre.lower()
    return Genre(g, f"solid {g} storytelling", f"{g} conventions it rarely escapes", f"{g} fans", f"is a {g} story")
