"""A flows folder, gateway.yaml and one file per flow, checked and loaded into a FlowSet."""

from __future__ import annotations

import hashlib
import re
from os import PathLike
from pathlib import Path

import yaml

from flows.fields import Fields, kind
from flows.flow_file import Claims, read_flow
from flows.keywords import normalise
from flows.lint import lint_length
from flows.model import FlowError, FlowSet, Gateway, Problem

GATEWAY_FILE = "gateway.yaml"
GATEWAY_KEYS = ("brand", "help", "stop", "start", "default", "opt_out_phrases")
DEFAULT_OPT_OUT_PHRASES = ("stop texting me", "remove me", "wrong number", "leave me alone")


class _FlowYaml(yaml.SafeLoader):
    """safe_load with YAML 1.2 booleans: only true/false are booleans, so the SPEC's own
    `confirm_words: [YES, Y]` (and a keyword like ON) stay words, as marketers mean them."""


_FlowYaml.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_FlowYaml.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")  # `questions[0].ask` → questions, 0, ask


def flow_files(directory: str | PathLike) -> list[Path]:
    """The folder's flow files, sorted by name: every *.yaml but gateway.yaml, not recursive."""
    return sorted(p for p in Path(directory).glob("*.yaml") if p.name != GATEWAY_FILE)


def check_flows(directory: str | PathLike) -> tuple[FlowSet | None, list[Problem]]:
    """Check a flows folder: every problem in file then key order, and the FlowSet if no error."""
    folder = Path(directory)
    if not folder.is_dir():
        return None, [Problem(".", ".", f"no such folder: {folder}")]
    problems: list[Problem] = []
    gateway = _gateway(folder, problems)
    claims, flows, paths = Claims(), [], flow_files(folder)
    for path in paths:
        file_problems: list[Problem] = []
        doc, digest = _read(path, file_problems)
        if doc is not None:
            flows.append(read_flow(doc, path.name, digest, gateway, claims, file_problems))
            file_problems = _in_key_order(file_problems, doc)
        problems += file_problems
    for stray in sorted(folder.glob("*.yml")):
        problems.append(Problem(stray.name, ".", "ignored: flow files end in .yaml", "warning"))
    if not paths:
        message = "no flows: every *.yaml file besides gateway.yaml is one flow"
        problems.append(Problem(".", ".", message, "warning"))
    if any(p.severity == "error" for p in problems):
        return None, problems
    by_keyword = {normalise(k): flow for flow in flows for k in flow.keywords}
    return FlowSet(gateway, tuple(flows), by_keyword), problems


def load_flows(directory: str | PathLike) -> FlowSet:
    """Load a flows folder once at start-up; raise FlowError with every error if any."""
    flow_set, problems = check_flows(directory)
    if flow_set is None:
        raise FlowError([p for p in problems if p.severity == "error"])
    return flow_set


def _gateway(folder: Path, problems: list[Problem]) -> Gateway | None:
    path = folder / GATEWAY_FILE
    if not path.is_file():
        message = "missing: every flows folder needs a gateway.yaml with the brand-wide texts"
        problems.append(Problem(GATEWAY_FILE, ".", message))
        return None
    file_problems: list[Problem] = []
    doc, digest = _read(path, file_problems)
    if doc is None:
        problems += file_problems
        return None
    fields = Fields(doc, GATEWAY_FILE, file_problems, GATEWAY_KEYS)
    texts = {key: fields.text(key, required=True) for key in ("brand", "help", "stop", "start")}
    texts["default"] = fields.empty_text("default", "")
    phrases = fields.texts("opt_out_phrases", DEFAULT_OPT_OUT_PHRASES)
    for key, text in texts.items():
        if text:
            file_problems += lint_length(GATEWAY_FILE, key, text)
    problems += _in_key_order(file_problems, doc)
    if None in texts.values() or phrases is None:
        return None
    # Built even beside an unknown key, so the flows are still checked against the brand.
    return Gateway(**texts, opt_out_phrases=phrases, content_hash=digest)


def _read(path: Path, problems: list[Problem]) -> tuple[dict | None, str]:
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()  # evidence: which wording was in force
    try:
        doc = yaml.load(raw, Loader=_FlowYaml)  # SafeLoader: plain data only, no objects
    except yaml.YAMLError as error:
        problems.append(Problem(path.name, ".", _syntax_message(error)))
        return None, digest
    if doc is None:
        problems.append(Problem(path.name, ".", "file is empty (expected a mapping of keys)"))
    elif not isinstance(doc, dict):
        problems.append(Problem(path.name, ".", f"expected a mapping of keys, got {kind(doc)}"))
    else:
        return doc, digest
    return None, digest


def _syntax_message(error: yaml.YAMLError) -> str:
    mark, problem = getattr(error, "problem_mark", None), getattr(error, "problem", None)
    if mark is None or problem is None:
        return "invalid YAML: " + " ".join(str(error).split())
    return f"invalid YAML: {problem} (line {mark.line + 1}, column {mark.column + 1})"


def _in_key_order(problems: list[Problem], doc: dict) -> list[Problem]:
    # Problems follow the file: ranked by where each step of their path stands in it,
    # a missing key after the keys that are there (the sort is stable).
    return sorted(problems, key=lambda p: _rank(doc, p.path))


def _rank(doc: dict, path: str) -> tuple[int, ...]:
    rank, node = [], doc
    for key, index in _STEP.findall(path):
        if isinstance(node, dict):
            keys = [str(k) for k in node]
            position = keys.index(key) if key in keys else len(keys)
            node = node.get(key)
        elif isinstance(node, list) and index:
            position = int(index)
            node = node[position] if position < len(node) else None
        else:
            position, node = 0, None
        rank.append(position)
    return tuple(rank)
