"""The READMEs' commands run as written on a fresh machine (issue #25): one with Python 3.11
and ``make`` only, where ``make setup`` (or ``make demo``) put uv in ``.tools/bin`` (not on
the PATH) and the locked environment in ``.venv``. Fast, no Spark.

Every line of the ``bash`` code blocks of README.md and bench/README.md is a command; its
program must be one of:

- ``make <target>``: a target of the Makefile;
- ``.venv/bin/<program>``: a program ``make setup`` installed there (``c360`` commands and
  their options are checked against the CLI itself; ``python <file>`` needs the file);
- a bare program of ``.venv/bin`` after a ``source .venv/bin/activate`` line of the file;
- an operating-system tool of :data:`OPERATOR_TOOLS` (commands for the production machine).

``uv`` is never one: the Makefile only has it in ``.tools/bin`` when it was not on the PATH.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "bench/README.md")
VENV_BIN = REPO / ".venv" / "bin"
# Tools of the machine the README's operations sections address, not of this project.
OPERATOR_TOOLS = {"chown", "chmod", "setfacl", "$SPARK_HOME/sbin/start-connect-server.sh"}
ACTIVATE = {"source .venv/bin/activate", ". .venv/bin/activate"}


def shell_commands(text: str) -> list[tuple[int, str]]:
    """``(line number, command)`` of every command in the ``bash``/``sh`` code blocks of a
    Markdown text: comments removed, backslash continuations joined, blank lines skipped."""
    out: list[tuple[int, str]] = []
    in_shell = in_block = False
    pending: tuple[int, str] | None = None
    for n, line in enumerate(text.splitlines(), 1):
        fence = re.match(r"^\s*```\s*(\w*)", line)
        if fence:
            in_block = not in_block
            in_shell = in_block and fence.group(1) in ("bash", "sh", "shell", "console")
            continue
        if not in_shell:
            continue
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if pending:
            line = f"{pending[1]} {line}"
            n = pending[0]
            pending = None
        if line.endswith("\\"):
            pending = (n, line[:-1].strip())
        elif line:
            out.append((n, line))
    return out


def make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w-]*):(?!=)", text, flags=re.M))


def c360_problem(words: list[str]) -> str | None:
    """Why ``c360 <words>`` would not run: an unknown command or option, else None."""
    from c360.cli import app

    if not words:
        return None
    runner = CliRunner()
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0, top.output
    command = words[0]
    if command.startswith("-"):
        return None if command in top.output else f"c360 has no option {command}"
    if command not in {c.name or c.callback.__name__ for c in app.registered_commands}:
        return f"c360 has no command {command!r}"
    sub = runner.invoke(app, [command, "--help"], terminal_width=200)
    assert sub.exit_code == 0, sub.output
    unknown = [o for o in re.findall(r"(?<![\w-])--[a-z][a-z-]*", " ".join(words[1:])) if o not in sub.output]
    return f"c360 {command} has no option(s) {', '.join(unknown)}" if unknown else None


def problem(command: str, activated: bool) -> str | None:
    """Why ``command`` would fail as written on a fresh machine after ``make setup``, or None."""
    words = shlex.split(command)
    while len(words) > 1 and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        words = words[1:]  # environment assignments before the program (C360_ENV=development ...)
    program, args = words[0], words[1:]
    if program == "make":
        missing = [a for a in args if "=" not in a and not a.startswith("-") and a not in make_targets()]
        return f"no make target {', '.join(missing)}" if missing else None
    if program in OPERATOR_TOOLS:
        return None
    if program.startswith(".venv/bin/") or (activated and (VENV_BIN / program).exists()):
        name = program.removeprefix(".venv/bin/")
        if not (VENV_BIN / name).exists():
            return f"{program}: make setup installs no such program"
        if name == "c360":
            return c360_problem(args)
        if name == "python" and args and args[0].endswith(".py") and not (REPO / args[0]).is_file():
            return f"{args[0]}: no such file"
        return None
    if program == "uv":
        return "'uv' is not on the PATH of a fresh machine (make setup puts it in .tools/bin only): " \
               "write .venv/bin/<program> or a make target"
    return f"{program!r} is not on the PATH of a fresh machine: write .venv/bin/{program} or a make target"


def test_the_readme_parser_sees_each_command_once():
    text = ("intro `uv run x`\n```bash\nmake demo   # comment\n\n.venv/bin/c360 run \\\n  --lake ./lake\n```\n"
            "```sql\nSELECT 1\n```\n```\nc360/  plumbing\n```\n")
    assert shell_commands(text) == [(3, "make demo"), (5, ".venv/bin/c360 run --lake ./lake")]


def test_a_command_that_needs_uv_or_a_missing_target_is_refused():
    assert "not on the PATH of a fresh machine" in problem("uv run c360 demo", activated=False)
    assert "not on the PATH" in problem("c360 demo", activated=False)
    assert problem("c360 demo", activated=True) is None
    assert problem("make nonsense", activated=False) == "no make target nonsense"
    assert problem(".venv/bin/c360 run --bogus-option 1", activated=False) == "c360 run has no option(s) --bogus-option"
    assert problem(".venv/bin/c360 fly", activated=False) == "c360 has no command 'fly'"
    assert problem("C360_ENV=development .venv/bin/c360 run --lake ./lake", activated=False) is None
    assert "not on the PATH" in problem("C360_ENV=development uv run c360 demo", activated=False)


@pytest.mark.parametrize("doc", DOCS)
def test_every_readme_command_runs_on_a_machine_without_uv_on_the_path(doc):
    assert VENV_BIN.is_dir(), "make setup creates .venv (make test runs it first)"
    text = (REPO / doc).read_text(encoding="utf-8")
    commands = shell_commands(text)
    assert commands, f"{doc} shows no commands"
    activated, problems = False, []
    for n, command in commands:
        if command in ACTIVATE:
            activated = True
            continue
        why = problem(command, activated)
        if why:
            problems.append(f"{doc}:{n}: {command}\n    {why}")
    assert not problems, "\n".join(problems)


def test_the_makefile_tells_users_commands_that_run_without_uv_on_the_path():
    echoes = [ln for ln in (REPO / "Makefile").read_text(encoding="utf-8").splitlines() if "echo" in ln]
    assert [ln for ln in echoes if re.search(r"\buv run\b", ln)] == []
