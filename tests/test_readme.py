"""The README's examples as a reader copies them: its Python blocks run as written (offline, in a scratch directory);
every shell command of its `bash` blocks and of its quick-start table parses with the option names and argument
counts of the command it calls (the command is stopped right after parsing, so nothing is trained or downloaded);
`make` targets exist; and the commands that are cheap and offline run for real."""

import argparse
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest


REPO_ROOT = Path(__file__).resolve().parent.parent
README = REPO_ROOT / "README.md"


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md python block {i}", "exec"), namespace)


# -- shell commands -------------------------------------------------------------------------------------------------


def readme_commands() -> list[str]:
    """Every command line of the README's `bash` blocks (continuation lines joined, comments dropped) and every
    backticked command of its tables that starts with `python `, `ophclip `, `accelerate ` or `make `."""
    text = README.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(shlex.join(words))
    for line in text.splitlines():
        if line.startswith("|"):
            for span in re.findall(r"`([^`]+)`", line):
                if span.split(" ", 1)[0] in ("python", "ophclip", "accelerate", "make") and " " in span:
                    commands.append(span)
    return commands


def command_target(words: list[str]):
    """`(kind, target, args)`: `("module", name, args)`, `("script", path, args)`, `("ophclip", None, args)` or
    `("make", target, [])`; None for a command that is not ours."""
    if words[0] == "make":
        return "make", (words[1] if len(words) > 1 else ""), []
    if words[0] == "ophclip":
        return "ophclip", None, words[1:]
    if words[0] == "python":
        rest = words[1:]
    elif words[:2] == ["accelerate", "launch"]:
        rest = words[2:]
        while rest and rest[0] != "-m" and not rest[0].endswith(".py"):
            rest = rest[1:]  # accelerate's own options and their values
    else:
        return None
    if rest[:1] == ["-m"]:
        return "module", rest[1], rest[2:]
    if rest and rest[0].endswith(".py"):
        return "script", rest[0], rest[1:]
    return None


class Parsed(BaseException):
    """Raised right after a command's options parse (a BaseException, so that no `except Exception` catches it)."""


def parse_only(monkeypatch):
    """Make every argparse parser stop the program once the whole command line has parsed cleanly."""
    original = argparse.ArgumentParser.parse_known_args

    def parse_known_args(self, args=None, namespace=None):
        parsed, extras = original(self, args, namespace)
        if not self.add_help:
            return parsed, extras  # a pre-parser that picks a few options (train_accelerate.py's --config)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        raise Parsed(parsed)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", parse_known_args)


def run_parse_only(kind: str, target, args: list[str], monkeypatch, capsys) -> str:
    """Run the command in this process until its options are parsed; returns "" or what went wrong."""
    monkeypatch.setattr(sys, "argv", [str(target or "ophclip"), *args])
    try:
        if kind == "ophclip":
            from ophclip_cli.main import main

            main(args)
        elif kind == "module":
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(str(REPO_ROOT / target), run_name="__main__")
    except Parsed:
        return ""
    except SystemExit as exit_:
        if exit_.code in (0, None) and "--help" in args:
            return ""
        return f"exit {exit_.code}: {capsys.readouterr().err.strip()[-500:]}"
    return "the command ran past its option parsing without parsing a command line"


README_COMMANDS = readme_commands()


def test_readme_has_the_commands_a_user_copies():
    joined = "\n".join(README_COMMANDS)
    for expected in ("make demo", "python -m evaluate_suite leaderboard", "python -m datasets_ophvl.build",
                     "python train_accelerate.py", "ophclip zero-shot", "python -m model_cards.publish model"):
        assert expected in joined, expected


@pytest.mark.parametrize("command", README_COMMANDS)
def test_readme_command_parses(command, monkeypatch, capsys, tmp_path):
    words = shlex.split(command)
    target = command_target(words)
    if target is None:
        pytest.skip(f"not one of the project's commands: {command}")
    kind, name, args = target
    if kind == "make":
        makefile = (REPO_ROOT / "Makefile").read_text()
        assert re.search(rf"^{re.escape(name)}:", makefile, flags=re.M), f"no make target {name!r}: {command}"
        for assignment in args:
            assert "=" in assignment
        return
    monkeypatch.chdir(REPO_ROOT)  # scripts and configs are named relative to the repository
    parse_only(monkeypatch)
    problem = run_parse_only(kind, name, args, monkeypatch, capsys)
    assert not problem, f"README command does not parse: {command}\n{problem}"


def test_a_wrong_option_is_caught(monkeypatch, capsys):
    """The check above can fail: a misspelt option is reported."""
    parse_only(monkeypatch)
    problem = run_parse_only("module", "evaluate_suite", ["leaderboard", "--resluts", "r.jsonl"], monkeypatch, capsys)
    assert problem.startswith("exit 2") and "--resluts" in problem


def test_cheap_readme_commands_run(tmp_path):
    """The offline, second-long commands of the README run as written."""
    def run(*args):
        result = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    listing = run("-m", "evaluate_suite", "benchmarks", "--real")
    rows = [line for line in listing.splitlines() if line and not line.startswith(" ")]
    assert len(rows) == 11  # the README says 11 real entries
    assert all(len(line) <= 120 for line in listing.splitlines() if line.startswith("    "))
    assert "# ophnet-phase" in run("-m", "evaluate_suite", "card", "ophnet-phase")
    assert "usage:" in run("train_accelerate.py", "--help")
