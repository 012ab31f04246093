"""Keyword normalisation and the compliance words that run before any flow (SPEC §5)."""

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.keywords import (
    OPT_OUT_WORDS,
    first_word,
    is_help,
    is_opt_out,
    is_start,
    normalise,
    words,
)
from flows.loader import DEFAULT_OPT_OUT_PHRASES

PHRASES = DEFAULT_OPT_OUT_PHRASES  # gateway.yaml's default opt_out_phrases


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("STOP", "stop", id="upper-case"),
        pytest.param("ＳＴＯＰ", "stop", id="nfkc-full-width"),
        pytest.param("Ｊｏｉｎ！", "join", id="nfkc-full-width-punctuation"),
        pytest.param("ﬁnd", "find", id="nfkc-ligature"),
        pytest.param("Straße", "strasse", id="casefold-sharp-s"),
        pytest.param("Stop!!!", "stop", id="trailing-punctuation"),
        pytest.param("¡stop!", "stop", id="inverted-exclamation"),
        pytest.param("“Join”", "join", id="curly-quotes"),
        pytest.param("«JOIN»", "join", id="guillemets"),
        pytest.param("(yes)", "yes", id="brackets"),
        pytest.param("...join...", "join", id="ellipsis-dots"),
        pytest.param("  stop  ", "stop", id="surrounding-spaces"),
        pytest.param("\u00a0join\u3000", "join", id="no-break-and-ideographic-space"),
        pytest.param("please   stop\n\tnow", "please stop now", id="inner-whitespace-collapsed"),
        pytest.param("i ❤️ coffee", "i ❤️ coffee", id="emoji-kept-inside"),
        pytest.param("join 🎉", "join 🎉", id="emoji-is-not-punctuation"),
        pytest.param("opt-out", "opt-out", id="inner-hyphen-kept"),
        pytest.param("Don't stop", "don't stop", id="inner-apostrophe-kept"),
        pytest.param("!!!", "", id="only-punctuation"),
        pytest.param("", "", id="empty"),
    ],
)
def test_normalise(text, expected):
    assert normalise(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("STOP", True, id="stop"),
        pytest.param("Stop!!!", True, id="stop-with-punctuation"),
        pytest.param("ＳＴＯＰ", True, id="stop-full-width"),
        *(pytest.param(word.upper(), True, id=f"word-{word}") for word in OPT_OUT_WORDS),
        pytest.param("opt-out", True, id="opt-out-hyphenated"),
        pytest.param("please stop", True, id="short-plea"),
        pytest.param("stop it", True, id="stop-it"),
        pytest.param("Stop texting me!!", True, id="phrase-stop-texting-me"),
        pytest.param(
            "remove me from this list please thank you very much",
            True,
            id="phrase-counts-at-any-length",
        ),
        pytest.param("wrong number", True, id="phrase-wrong-number"),
        pytest.param("Leave me alone.", True, id="phrase-leave-me-alone"),
        pytest.param("the end", True, id="short-message-with-end"),
        pytest.param("ok cancel my texts please", True, id="short-message-with-cancel"),
        pytest.param(
            "I can't stop loving your coffee, it is the best ever",
            False,
            id="long-message-without-phrase",
        ),
        pytest.param("weekend", False, id="whole-words-only-weekend"),
        pytest.param("stopped", False, id="whole-words-only-stopped"),
        pytest.param("JOIN", False, id="keyword"),
        pytest.param("yes", False, id="confirmation"),
        pytest.param("removed mea culpa", False, id="phrase-whole-words-only"),
        pytest.param("", False, id="empty"),
    ],
)
def test_is_opt_out(text, expected):
    assert is_opt_out(normalise(text), PHRASES) is expected


def test_opt_out_phrases_come_from_the_gateway():
    text = normalise("no more texts for me please, thank you kindly")
    assert not is_opt_out(text, PHRASES)
    assert is_opt_out(text, ("No more texts!",))


@pytest.mark.parametrize(
    "text, start, help_",
    [
        pytest.param("START", True, False, id="start"),
        pytest.param("unstop", True, False, id="unstop"),
        pytest.param("Start!", True, False, id="start-punctuation"),
        pytest.param("start now", False, False, id="start-not-only-word"),
        pytest.param("HELP", False, True, id="help"),
        pytest.param("info", False, True, id="info"),
        pytest.param("Help?", False, True, id="help-punctuation"),
        pytest.param("help me", False, False, id="help-not-only-word"),
        pytest.param("helpful", False, False, id="help-whole-word-only"),
    ],
)
def test_start_and_help_words(text, start, help_):
    assert (is_start(normalise(text)), is_help(normalise(text))) == (start, help_)


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("ALERTS downtown", "alerts", id="first-of-two"),
        pytest.param("join! please", "join", id="punctuation-stripped"),
        pytest.param("VIP", "vip", id="single-word"),
    ],
)
def test_first_word(text, expected):
    assert first_word(normalise(text)) == expected


def test_words_drop_punctuation():
    assert words(normalise("Opt-out, please!")) == ("opt", "out", "please")


# Characters that stress normalisation: combining marks, case folds that expand, spaces
# and punctuation of several scripts, full-width and compatibility forms.
_TRICKY = st.text(alphabet=st.sampled_from("aAjJ ẞßǰ\u030c\u0301\u00a0\u3000!¡?.-‐«»ＳﬁΣσςİı\t"))


@given(st.text() | _TRICKY)
def test_normalising_twice_is_normalising_once(text):
    assert normalise(normalise(text)) == normalise(text)


@given(st.text() | _TRICKY)
def test_normalised_text_has_no_edges_or_runs_of_space(text):
    result = normalise(text)
    assert result == " ".join(result.split())
    for edge in (result[:1], result[-1:]):
        assert not edge or not (edge.isspace() or unicodedata.category(edge).startswith("P"))


@given(
    st.sampled_from(OPT_OUT_WORDS),
    st.text(alphabet=st.sampled_from(" !?.¡¿…\u3000"), max_size=4),
    st.text(alphabet=st.sampled_from(" !?.¡¿…\u3000"), max_size=4),
)
def test_opt_out_word_survives_any_wrapping(word, before, after):
    assert is_opt_out(normalise(f"{before}{word.upper()}{after}"))
