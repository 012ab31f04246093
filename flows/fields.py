"""Typed reads of one YAML mapping; every mistake is recorded as a Problem, never raised."""

from __future__ import annotations

from datetime import date

from flows.model import Problem

# bool before int: YAML booleans are Python ints too.
_KINDS = (
    (bool, "boolean"),
    (int, "int"),
    (float, "float"),
    (str, "string"),
    (list, "list"),
    (dict, "mapping"),
    (date, "date"),
    (type(None), "null"),
)


def kind(value: object) -> str:
    """The YAML-facing name of a value's type, for messages such as `got int`."""
    return next((name for cls, name in _KINDS if isinstance(value, cls)), type(value).__name__)


class Fields:
    """One mapping of a YAML file, read key by key into plain values."""

    def __init__(
        self,
        doc: dict,
        file: str,
        problems: list[Problem],
        allowed: tuple[str, ...],
        prefix: str = "",
    ):
        self.doc, self.file, self.problems, self.prefix = doc, file, problems, prefix
        for key in doc:
            if key not in allowed:
                self.problem(key, f"unknown key (expected one of: {', '.join(allowed)})")

    def path(self, key: object) -> str:
        """The dotted path of `key`, e.g. `replies.prompt` or `questions[0].expect`."""
        return f"{self.prefix}{key}"

    def problem(self, key: object, message: str, severity: str = "error") -> None:
        """Record a problem at `key`."""
        self._at(self.path(key), message, severity)

    def _get(self, key: str, required: bool) -> tuple[bool, object]:
        if key in self.doc:
            return True, self.doc[key]
        if required:
            self.problem(key, "missing required key")
        return False, None

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        """A non-empty string, `default` when absent, None when it is wrong."""
        found, value = self._get(key, required)
        if not found:
            return default
        return self._check_text(self.path(key), value)

    def _check_text(self, path: str, value: object, *, empty_ok: bool = False) -> str | None:
        if isinstance(value, bool):
            # Unquoted true/false are booleans (the loader keeps yes/no/on/off as words).
            self._at(path, f"expected a string, got boolean {str(value).lower()} {_QUOTE_HINT}")
        elif not isinstance(value, str):
            self._at(path, f"expected a string, got {kind(value)}")
        elif not value.strip() and not empty_ok:
            self._at(path, "must not be empty")
        else:
            return value
        return None

    def empty_text(self, key: str, default: str) -> str | None:
        """A string that may be empty, `default` when absent, None when it is wrong."""
        found, value = self._get(key, False)
        return self._check_text(self.path(key), value, empty_ok=True) if found else default

    def texts(
        self, key: str, default: tuple[str, ...] | None = None, *, required: bool = False
    ) -> tuple[str, ...] | None:
        """A non-empty list of non-empty strings as a tuple, None when any item is wrong."""
        found, value = self._get(key, required)
        if not found:
            return default
        if not isinstance(value, list) or not value:
            self.problem(key, f"expected a non-empty list of strings, got {_describe(value)}")
            return None
        items = [self._check_text(f"{self.path(key)}[{i}]", v) for i, v in enumerate(value)]
        return None if None in items else tuple(items)

    def flag(self, key: str, default: bool) -> bool | None:
        """true or false, `default` when absent, None when it is wrong."""
        found, value = self._get(key, False)
        if not found:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _WORDS_FOR_BOOL:
            return _WORDS_FOR_BOOL[value.lower()]  # "double_opt_in: no" means false
        self.problem(key, f"expected true or false, got {kind(value)}")
        return None

    def mapping(self, key: str, *, required: bool = False) -> dict | None:
        """A mapping of keys, None when absent or wrong."""
        found, value = self._get(key, required)
        if found and not isinstance(value, dict):
            self.problem(key, f"expected a mapping of keys, got {kind(value)}")
            return None
        return value

    def items(self, key: str) -> list | None:
        """A list (of anything), [] when absent, None when wrong."""
        found, value = self._get(key, False)
        if not found:
            return []
        if not isinstance(value, list):
            self.problem(key, f"expected a list, got {kind(value)}")
            return None
        return value

    def _at(self, path: str, message: str, severity: str = "error") -> None:
        self.problems.append(Problem(self.file, path, message, severity))


_QUOTE_HINT = '(YAML reads unquoted true/false as booleans: quote it, e.g. "TRUE")'
_WORDS_FOR_BOOL = {"yes": True, "on": True, "no": False, "off": False}


def _describe(value: object) -> str:
    return "an empty list" if value == [] else kind(value)
