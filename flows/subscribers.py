"""Reading a CSV of existing subscribers and their consent evidence, for `flask import`."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from flows.phones import to_e164
from flows.times import parse_instant

COLUMNS = ("phone", "consented_at", "consent_text")


@dataclass(frozen=True)
class Subscriber:
    """One valid row: the number, when and to what wording it consented."""

    line: int
    phone: str
    consented_at: datetime
    consent_text: str


def read_subscribers(
    lines: Iterable[str], region: str, now: datetime
) -> tuple[list[Subscriber], list[str]]:
    """Every valid row and every problem as `line N: column: message` (header is line 1)."""
    reader = csv.DictReader(lines)
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        return [], [
            f"line 1: header: missing column(s) {', '.join(missing)} (need {','.join(COLUMNS)})"
        ]
    rows, problems = [], []
    for row in reader:
        line = reader.line_num
        phone = to_e164((row["phone"] or "").strip(), region)
        text = (row["consent_text"] or "").strip()
        try:
            when = parse_instant(row["consented_at"] or "")
        except ValueError:
            when = None
        if phone is None:
            problems.append(f"line {line}: phone: not a phone number: {row['phone']!r}")
        if when is None:
            problems.append(
                f"line {line}: consented_at: not an ISO-8601 time: {row['consented_at']!r}"
            )
        elif when > now:
            problems.append(f"line {line}: consented_at: in the future")
        if not text:
            # TCPA: prior express written consent is only as good as the wording agreed to.
            problems.append(f"line {line}: consent_text: empty")
        if phone and when and when <= now and text:
            rows.append(Subscriber(line, phone, when, text))
    return rows, problems
