"""Target checks (elm/synth/checks.py): what is cleaned, what is rejected, and why."""

import pytest

from elm.synth.checks import MIN_NAME_CHARS, check_target, strip_title_words, title_variants, title_words

STORY = "A cowboy doll and a space ranger become friends. It is warm and funny. Families love it."


def test_a_good_target_passes_unchanged():
    c = check_target(STORY, max_tokens=96, avoid=("Toy Story",))
    assert c.reason is None and c.text == STORY and c.changed == ()


def test_lead_in_and_title_sentences_are_removed():
    c = check_target("Sure! Here is a summary:\nToy Story is a hit. " + STORY, max_tokens=96, avoid=("Toy Story",))
    assert c.reason is None and c.text == STORY and c.changed == ("lead_in", "stripped_title")
    assert check_target("toy story rocks. It is fun.", max_tokens=96, avoid=("Toy Story",)).reason == "too_short"
    assert check_target("Toy Story. Toy Story!", max_tokens=96, avoid=("Toy Story",)).reason == "names_title"


def test_short_titles_are_everyday_words_and_not_checked():
    assert len("Up") < MIN_NAME_CHARS
    c = check_target("Up and away goes the house with its balloons, a tender story.", max_tokens=96, avoid=("Up",))
    assert c.reason is None and "Up" in c.text


def test_alternate_titles_count_as_the_title():
    names = title_variants("Three Colors: Red (Trois couleurs: Rouge)")
    assert names == ("Three Colors: Red (Trois couleurs: Rouge)", "Three Colors: Red", "Trois couleurs: Rouge")
    assert title_variants("Seven (a.k.a. Se7en)")[1:] == ("Seven", "Se7en")
    c = check_target('The movie is titled "Three Colors: Red". ' + STORY, max_tokens=96, avoid=names)
    assert c.text == STORY


def test_words_of_the_title_are_removed_wherever_a_text_uses_them():
    """Scoring's second cleaning: pieces of a title score by recall as the whole title does."""
    names = title_variants("Three Colors: Red (Trois couleurs: Rouge)")
    assert title_words(names) == ("three", "colors", "red", "trois", "couleurs", "rouge")
    text, n = strip_title_words('The story of "Three Colors" is a tale of love, in red.', names)
    assert (text, n) == ("The story of is a tale of love, in.", 3)
    # articles, "film" and the like are not title words; a possessive goes with its word; case is ignored
    assert title_words(("The Man from the Film (1999)",)) == ("man",)
    assert strip_title_words("ROBIN's band and Robin Hood ride.\n2. Hoods.", ("Robin Hood",)) == (
        "band and ride.\n2. Hoods.", 3)
    assert title_words(("2001: A Space Odyssey",))[0] == "2001"  # a number that is the title, not a year
    assert strip_title_words("Toys and storytelling.", ("Toy Story",)) == ("Toys and storytelling.", 0)  # words
    assert strip_title_words("A toy story.", ()) == ("A toy story.", 0)


def test_list_items_stay_whole_when_one_is_dropped():
    text = "1. Great fun.\n2. Nice toys.\n3. Toy Story has heart.\n4. Good music.\n5. Warm voices."
    c = check_target(text, max_tokens=96, avoid=("Toy Story",))
    assert c.text.splitlines() == ["1. Great fun.", "2. Nice toys.", "4. Good music.", "5. Warm voices."]


@pytest.mark.parametrize("text,reason", [
    ("", "empty"), ("   \n ", "empty"), ("Fun film.", "too_short"),
    ("the movie is great the movie is great the movie is great the movie is great the movie", "repetitive"),
])
def test_rejections(text, reason):
    c = check_target(text, max_tokens=96)
    assert c.reason == reason and c.text == ""


def test_an_echo_of_the_prompt_is_rejected():
    prompt = "Task: Summarize the movie: its premise, tone and genre.\nWrite plain prose, at most 3 sentences."
    assert check_target("Summarize the movie: its premise, tone and genre.", max_tokens=96,
                        prompt=prompt).reason == "repeats_prompt"
    assert check_target(STORY, max_tokens=96, prompt=prompt).reason is None


def test_long_targets_are_cut_at_a_sentence():
    words = [f"word{i}" for i in range(120)]
    text = " ".join(" ".join(words[i:i + 8]) + "." for i in range(0, 120, 8))  # 15 distinct sentences
    c = check_target(text, max_tokens=40)
    assert c.reason is None and "truncated" in c.changed
    assert c.text.endswith(".") and len(c.text.split()) <= int(40 / 1.4)
