"""Checking a question step's answer against its `expect` kind."""

from __future__ import annotations

import re
from datetime import datetime

from flows.keywords import normalise
from flows.model import Question

_US_ZIP = re.compile(r"[0-9]{5}(?:-[0-9]{4})?")  # ASCII digits only, not any Unicode \d
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]{2,}")
_DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%m/%d/%y", "%m-%d-%Y", "%B %d %Y", "%b %d %Y")
MAX_TEXT_ANSWER = 500


def _date(text: str) -> str | None:
    cleaned = text.replace(",", " ")
    cleaned = " ".join(cleaned.split())
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(cleaned, fmt).date().isoformat()
        except ValueError:
            continue
    return None


def _one_of(question: Question, text: str) -> str | None:
    for number, choice in enumerate(question.choices, start=1):
        # "2" picks the second choice: people answer numbered lists with numbers.
        if text in (normalise(choice), str(number)):
            return choice
    return None


def check_answer(question: Question, text: str) -> str | None:
    """The value to store for this answer, or None when it doesn't fit `expect`."""
    if question.expect == "text":
        # Anything non-empty, bounded so a profile field stays a field.
        return text.strip()[:MAX_TEXT_ANSWER] or None
    # Typed answers are read like keywords: full-width digits become ASCII, and the
    # punctuation around them ("10001.") doesn't matter.
    text = normalise(text)
    if not text:
        return None
    if question.expect == "us_zip":
        return text if _US_ZIP.fullmatch(text) else None
    if question.expect == "email":
        return text if _EMAIL.fullmatch(text) else None
    if question.expect == "date":
        return _date(text)
    return _one_of(question, text)
