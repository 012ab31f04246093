"""The flow domain's values: what the YAML files become once they are checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

# The kinds of answer a question step may expect (SPEC §6). YAML may only name these.
EXPECT_KINDS = ("us_zip", "email", "date", "text", "one_of")


@dataclass(frozen=True)
class Frequency:
    """A disclosed message cap such as 4/month: `count` messages per rolling `window`."""

    count: int
    unit: str  # day | week | month
    window: timedelta


@dataclass(frozen=True)
class Question:
    """One question step, asked after the welcome."""

    field: str
    ask: str
    expect: str
    invalid: str
    choices: tuple[str, ...] = ()  # for expect: one_of, as written in the YAML


@dataclass(frozen=True)
class Replies:
    """Every text a flow can send; defaults are already filled in by the loader."""

    prompt: str
    welcome: str
    already_subscribed: str
    expired: str
    help: str
    done: str


@dataclass(frozen=True)
class Flow:
    """One keyword flow, loaded from one YAML file."""

    id: str
    keywords: tuple[str, ...]  # as written (upper case in the examples)
    match: str  # only_word | first_word
    program: str
    double_opt_in: bool
    confirm_words: tuple[str, ...]
    confirm_within: timedelta
    frequency: Frequency | None
    replies: Replies
    questions: tuple[Question, ...]
    file: str  # file name relative to the flows folder
    content_hash: str  # SHA-256 of the file's bytes, kept as evidence


@dataclass(frozen=True)
class Gateway:
    """The brand-wide texts of gateway.yaml."""

    brand: str
    help: str
    stop: str
    start: str
    default: str
    opt_out_phrases: tuple[str, ...]
    content_hash: str


@dataclass(frozen=True)
class FlowSet:
    """The gateway texts and every flow, with a lookup from normalised keyword to flow."""

    gateway: Gateway
    flows: tuple[Flow, ...]
    by_keyword: dict[str, Flow] = field(default_factory=dict, compare=False)

    def flow(self, flow_id: str) -> Flow | None:
        """The flow with this id, or None."""
        return next((f for f in self.flows if f.id == flow_id), None)


@dataclass(frozen=True)
class Problem:
    """One finding of the loader or the lint, printed as `file: key.path: message`."""

    file: str
    path: str
    message: str
    severity: str = "error"  # error | warning

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.message}"


class FlowError(Exception):
    """Raised when the flows folder holds at least one error; carries every problem."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
