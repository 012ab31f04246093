"""The README is the front door: every setting and command in the code is documented there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import app as smsbot
import commands
import settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(settings.DEFAULTS))
def test_every_setting_is_in_the_readme_table(name: str) -> None:
    assert re.search(rf"^\| `SMSBOT_{name}`", README, re.MULTILINE), name


def test_every_setting_named_in_the_code_is_documented() -> None:
    sources = [*ROOT.glob("*.py"), *ROOT.glob("flows/*.py"), *ROOT.glob("storage/*.py")]
    named = {n for p in sources for n in re.findall(r"SMSBOT_[A-Z_]+", p.read_text("utf-8"))}
    assert named, "the scan found nothing: it could never fail"
    assert {n for n in named if n not in README} == set()


def command_names(app) -> set[str]:
    """Every `flask` command this project adds, as `group sub` names."""
    groups = [commands.flows_cli, smsbot.simulate_cli, *app.cli.commands.values()]
    names = set()
    for command in groups:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            names.update(f"{command.name} {sub}" for sub in subcommands)
        else:
            names.add(command.name)
    return names


def test_every_command_is_in_the_readme(app) -> None:
    names = command_names(app)
    assert {"init-db", "flows check", "simulate"} <= names
    assert {n for n in names if f"`flask {n}" not in README} == set()


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    test_block = re.search(r"## Tests\n\n```sh\n(.+?)\n```", README, re.DOTALL)
    assert test_block is not None
    assert test_block[1].strip() in [line.strip() for line in ci]
    assert "ruff check ." in ci and "ruff format --check ." in ci


def test_quickstart_is_two_commands() -> None:
    block = re.search(r"## Quickstart\n.*?```sh\n(.+?)\n```", README, re.DOTALL)
    assert block is not None
    assert len(block[1].strip().splitlines()) == 2
