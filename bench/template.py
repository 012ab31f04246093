"""One number's rows as smsbot stores them, with the per-number values as slots to fill.

bench/prefill.py copies them a million times: recording them through smsbot itself keeps
the copies what smsbot would have written, whatever its columns and texts become.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path

from app import create_app, receive
from flows.outcome import Inbound
from storage.ledger import canonical_json, subject_key, timestamp

# The recorded number and its values, which each copy replaces by value.
_PHONE = "+12025550100"
_AT = datetime(2001, 1, 1, tzinfo=UTC)
_GAP = timedelta(minutes=2)
KEY = 1  # the slot of the number key: slots are phone, key, a sid per text, a time per text


def config(path: Path | str, secret: str) -> dict[str, object]:
    """create_app's settings for a database file that is not served."""
    # The token only keeps create_app from warning: nothing is signed here.
    return {
        "DATABASE": str(path),
        "DATABASE_URL": None,
        "SECRET_KEY": secret,
        "TWILIO_AUTH_TOKEN": "prefill",
    }


@dataclass(frozen=True)
class Event:
    """One recorded ledger event."""

    at: int  # the slot of its time
    name: str
    body: dict
    text: str  # the body's canonical JSON
    changes: tuple[tuple[str, int, str], ...]  # (field, slot, recorded value) per number

    def body_for(self, values: tuple) -> dict:
        """The body for one number's values."""
        return {**self.body, **{field: values[slot] for field, slot, _ in self.changes}}

    def text_for(self, values: tuple) -> str:
        """The body's canonical JSON for one number's values, without re-encoding it."""
        text = self.text
        for _, slot, recorded in self.changes:
            text = text.replace(recorded, values[slot])
        return text


@dataclass(frozen=True)
class Template:
    """The rows smsbot stored for one number, as getters over (slots..., constants...)."""

    texts: tuple[str, ...]
    tables: dict[str, tuple[tuple[str, ...], list[itemgetter]]]  # name -> (columns, rows)
    constants: tuple[object, ...]  # the values every copy keeps, after the slots
    events: tuple[Event, ...]


def record(texts: tuple[str, ...], secret: str) -> Template:
    """Send `texts` from one number through smsbot on a scratch database; read back its rows."""
    with tempfile.TemporaryDirectory(prefix="smsbot-template-") as scratch:
        app = create_app(config(Path(scratch) / "template.db", secret))
        store, flows = app.extensions["smsbot.store"], app.extensions["smsbot.flows"]
        sids = tuple(f"SMtemplate{n:024d}" for n in range(len(texts)))
        times = tuple(_AT + n * _GAP for n in range(len(texts)))
        for sid, text, now in zip(sids, texts, times, strict=True):
            receive(store, flows, Inbound(sid=sid, phone=_PHONE, body=text), now)
        store.close()
        slots = (_PHONE, subject_key(secret, _PHONE), *sids, *map(timestamp, times))
        with sqlite3.connect(Path(scratch) / "template.db") as conn:
            return _read(conn, texts, slots)


def _read(conn: sqlite3.Connection, texts: tuple[str, ...], slots: tuple[str, ...]) -> Template:
    slot = {value: n for n, value in enumerate(slots)}
    constants: list[object] = []
    tables: dict[str, tuple[tuple[str, ...], list[itemgetter]]] = {}
    names = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
        " AND name NOT LIKE '\\_%' ESCAPE '\\' AND name != 'ledger'"
    ).fetchall()
    for (name,) in names:
        info = conn.execute(f"PRAGMA table_info({name})").fetchall()
        # An INTEGER PRIMARY KEY (messages.id) is left for SQLite to number.
        keys = [c for c in info if c[5]]
        auto = keys[0][1] if len(keys) == 1 and keys[0][2].upper() == "INTEGER" else None
        columns = tuple(c[1] for c in info if c[1] != auto)
        getters = []
        # In key order (some tables are WITHOUT ROWID): messages.id is the order they came.
        order = ", ".join(c[1] for c in sorted(keys, key=itemgetter(5)))
        for row in conn.execute(f"SELECT {', '.join(columns)} FROM {name} ORDER BY {order}"):
            indexes = []
            for value in row:
                if value not in slot:
                    _refuse_hidden(value, slots, name)
                    constants.append(value)
                indexes.append(slot.get(value, len(slots) + len(constants) - 1))
            getters.append(itemgetter(*indexes))
        if getters:
            tables[name] = (columns, getters)
    events = []
    rows = conn.execute("SELECT at, event, subject_key, body FROM ledger ORDER BY seq")
    for at, event, key, body in rows:
        body, changes = json.loads(body), []
        for field, value in body.items():
            if isinstance(value, str) and value in slot:
                changes.append((field, slot[value], value))
            else:
                _refuse_hidden(value, slots, f"ledger.{field}")
        if key != slots[KEY]:
            raise SystemExit(f"template: a ledger row of another number key: {key}")
        events.append(Event(slot[at], event, body, canonical_json(body), tuple(changes)))
    return Template(texts, tables, tuple(constants), tuple(events))


def _refuse_hidden(value: object, slots: tuple[str, ...], where: str) -> None:
    # A per-number value inside a larger one (JSON, say) would be copied unchanged.
    text = json.dumps(value)
    if any(recorded in text for recorded in slots):
        raise SystemExit(f"template: {where} holds a per-number value it can't rewrite: {text}")
