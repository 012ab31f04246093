"""Checking a question step's answer against its `expect` kind."""

from __future__ import annotations

import re
from datetime import datetime

from flows.keywords import normalise
from flows.model import Question

_US_ZIP = re.compile(r"\d{5}(?:-\d{4})?")
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
    wanted = normalise(text)
    for number, choice in enumerate(question.choices, start=1):
        # "2" picks the second choice: people answer numbered lists with numbers.
        if wanted in (normalise(choice), str(number)):
            return choice
    return None


def check_answer(question: Question, text: str) -> str | None:
    """The value to store for this answer, or None when it doesn't fit `expect`."""
    text = text.strip()
    if not text:
        return None
    if question.expect == "us_zip":
        return text if _US_ZIP.fullmatch(text) else None
    if question.expect == "email":
        return text if _EMAIL.fullmatch(text) else None
    if question.expect == "date":
        return _date(text)
    if question.expect == "one_of":
        return _one_of(question, text)
    # expect: text — anything non-empty, bounded so a profile field stays a field.
    return text[:MAX_TEXT_ANSWER]
