"""A flow file's `questions` list read into Question steps (SPEC §6)."""

from __future__ import annotations

import re

from flows.fields import Fields, kind
from flows.lint import lint_length
from flows.model import EXPECT_KINDS, Question

QUESTION_KEYS = ("field", "ask", "expect", "invalid", "choices")

# A profile field name: safe as a column, a JSON key and a template name.
_FIELD = re.compile(r"[a-z][a-z0-9_]*")


def read_questions(fields: Fields) -> tuple[Question, ...] | None:
    """The flow's questions in order; () when it has none, None when any is wrong."""
    items = fields.items("questions")
    if items is None:
        return None
    questions, seen = [], {}
    for i, item in enumerate(items):
        prefix = f"questions[{i}]"
        if not isinstance(item, dict):
            fields.problem(prefix, f"expected a mapping of keys, got {kind(item)}")
            questions.append(None)
            continue
        step = Fields(item, fields.file, fields.problems, QUESTION_KEYS, prefix=f"{prefix}.")
        name = step.text("field", required=True)
        if name is not None and not _FIELD.fullmatch(name):
            message = "must start with a lowercase letter, then lowercase letters, digits or '_'"
            step.problem("field", f"field '{name}' {message}")
            name = None
        elif name in seen:
            step.problem("field", f"duplicate field '{name}' (also {seen[name]})")
            name = None
        elif name is not None:
            seen[name] = prefix
        questions.append(_question(step, name))
    return None if None in questions else tuple(questions)


def _question(step: Fields, name: str | None) -> Question | None:
    ask = step.text("ask", required=True)
    expect = step.text("expect", required=True)
    if expect is not None and expect not in EXPECT_KINDS:
        step.problem("expect", f"unknown expect kind '{expect}' (expected one of: {_KINDS})")
        expect = None
    choices = step.texts("choices", ())
    if expect == "one_of" and "choices" not in step.doc:
        step.problem("choices", "missing required key (expect one_of needs choices)")
        choices = None
    elif expect not in (None, "one_of") and "choices" in step.doc:
        step.problem("choices", "only allowed when expect is one_of")
        choices = None
    invalid = step.text("invalid", f"Sorry, that isn't a valid answer. {ask}")
    for key, text in (("ask", ask), ("invalid", invalid)):
        if text:
            default = key not in step.doc
            step.problems.extend(lint_length(step.file, step.path(key), text, default=default))
    if None in (name, ask, expect, choices, invalid):
        return None
    return Question(field=name, ask=ask, expect=expect, invalid=invalid, choices=choices)


_KINDS = ", ".join(EXPECT_KINDS)
