"""The report `flask flows check` prints: every problem, then what each text costs to send."""

from __future__ import annotations

from os import PathLike

from flows.loader import GATEWAY_FILE, check_flows, flow_files
from flows.model import Flow, Gateway, Problem
from flows.segments import describe


def problem_line(problem: Problem) -> str:
    """`file: key.path: message`; a warning gets the prefix `warning: `."""
    return f"warning: {problem}" if problem.severity == "warning" else str(problem)


def report(directory: str | PathLike) -> tuple[list[str], bool]:
    """The lines `flask flows check` prints, and True when the folder has no error."""
    flow_set, problems = check_flows(directory)
    lines = [problem_line(p) for p in problems]
    if flow_set is not None:
        lines += _cost_lines(GATEWAY_FILE, _gateway_texts(flow_set.gateway))
        for flow in flow_set.flows:
            lines += _cost_lines(flow.file, _flow_texts(flow))
    errors = sum(p.severity == "error" for p in problems)
    counts = (
        _count(len(flow_files(directory)), "flow"),
        _count(errors, "error"),
        _count(len(problems) - errors, "warning"),
    )
    lines.append(", ".join(counts))
    return lines, errors == 0


def _gateway_texts(gateway: Gateway) -> list[tuple[str, str]]:
    return [(key, getattr(gateway, key)) for key in ("help", "stop", "start", "default")]


def _flow_texts(flow: Flow) -> list[tuple[str, str]]:
    texts = [(f"replies.{key}", text) for key, text in vars(flow.replies).items()]
    for i, question in enumerate(flow.questions):
        texts += [
            (f"questions[{i}].ask", question.ask),
            (f"questions[{i}].invalid", question.invalid),
        ]
    return texts


def _cost_lines(file: str, texts: list[tuple[str, str]]) -> list[str]:
    # Empty texts are never sent (no default reply, no prompt without double opt-in).
    return [f"{file}: {path}: {describe(text)}" for path, text in texts if text]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
