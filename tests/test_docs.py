"""Documentation that is generated or promised stays true."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from monitor.cli import cli

from conftest import ROOT

GENERATED = ["docs/register.md", "docs/cli.md"]


@pytest.mark.parametrize("doc", GENERATED)
def test_generated_docs_are_up_to_date(doc: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cogapp", "--check", doc],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, f"{doc} is stale: run 'cog -r {doc}'\n{out.stdout}{out.stderr}"


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", text, flags=re.S)[:2]


def test_readme_starts_with_the_two_commands() -> None:
    demo, tests = _readme_commands()
    assert "pip install" in demo and "medmon replay pcaps/" in demo
    assert "pip install -e '.[test]'" in tests and "pytest" in tests


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    _demo, tests = _readme_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci.splitlines()


def test_every_command_is_in_the_reference() -> None:
    reference = (ROOT / "docs" / "cli.md").read_text()
    for name in cli.commands:
        assert f"## medmon {name}\n" in reference
        assert cli.commands[name].help and "Example:" in cli.commands[name].help
        for sub, command in getattr(cli.commands[name], "commands", {}).items():
            assert f"### medmon {name} {sub}\n" in reference
            assert command.help and "Example:" in command.help
