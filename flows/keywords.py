"""Text normalisation and the compliance words that run before any flow (SPEC §5)."""

from __future__ import annotations

import re
import unicodedata
from functools import cache

# FCC 24-18 (47 CFR 64.1200(a)(10)): these words revoke consent per se, in any context.
OPT_OUT_WORDS = (
    "stop",
    "stopall",
    "unsubscribe",
    "cancel",
    "end",
    "quit",
    "revoke",
    "optout",
    "opt out",
)
START_WORDS = ("start", "unstop")
HELP_WORDS = ("help", "info")
# Never usable as a flow keyword: a marketer may reword the replies, never take the words.
RESERVED_WORDS = frozenset(OPT_OUT_WORDS + START_WORDS + HELP_WORDS)

# A "short message" that contains an opt-out word as a whole word is an opt-out
# ("please stop", "stop it"): FCC 24-18 asks for any reasonable means of revoking.
SHORT_MESSAGE_WORDS = 6

_WORD = re.compile(r"\w+")


def _is_edge(char: str) -> bool:
    return char.isspace() or unicodedata.category(char).startswith("P")


def normalise(text: str) -> str:
    """NFKC, case-fold, strip surrounding whitespace and punctuation, collapse inner spaces."""
    text = unicodedata.normalize("NFKC", text).casefold()
    # Case-folding can produce sequences NFKC would compose again (e.g. "ǰ"), and NFKC
    # of the folded text can change the case again; repeat until it settles.
    while (again := unicodedata.normalize("NFKC", text).casefold()) != text:
        text = again
    start, end = 0, len(text)
    while start < end and _is_edge(text[start]):
        start += 1
    while end > start and _is_edge(text[end - 1]):
        end -= 1
    return " ".join(text[start:end].split())


def words(normalised: str) -> tuple[str, ...]:
    """The whole words of a normalised text, punctuation dropped ("opt-out" → opt, out)."""
    return tuple(_WORD.findall(normalised))


@cache
def _phrase_index(phrases: tuple[str, ...]) -> tuple[frozenset[tuple[str, ...]], tuple[int, ...]]:
    """The phrases as word tuples, and their lengths; built once per set of phrases (the
    gateway's are fixed for the life of the process)."""
    split = frozenset(w for p in phrases if (w := words(normalise(p))))
    return split, tuple(sorted({len(w) for w in split}))


def contains_phrase(text_words: tuple[str, ...], phrases: tuple[str, ...]) -> bool:
    """True when one of `phrases` stands in `text_words` as consecutive whole words."""
    split, lengths = _phrase_index(phrases)
    return any(
        text_words[i : i + n] in split for n in lengths for i in range(len(text_words) - n + 1)
    )


def is_opt_out(normalised: str, phrases: tuple[str, ...] = ()) -> bool:
    """True when the text revokes consent: an opt-out word alone, a phrase, or a short plea."""
    if normalised in OPT_OUT_WORDS:
        return True
    text_words = words(normalised)
    if contains_phrase(text_words, phrases):
        return True
    return len(normalised.split()) <= SHORT_MESSAGE_WORDS and contains_phrase(
        text_words, OPT_OUT_WORDS
    )


def is_start(normalised: str) -> bool:
    """True for START or UNSTOP as the only word."""
    return normalised in START_WORDS


def is_help(normalised: str) -> bool:
    """True for HELP or INFO as the only word."""
    return normalised in HELP_WORDS


def first_word(normalised: str) -> str:
    """The first whitespace-separated word, with its surrounding punctuation stripped."""
    head = normalised.split(" ", 1)[0]
    return normalise(head)
