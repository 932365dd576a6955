"""The README's commands are the command line's: a flag the README names exists, and a command it gives runs
past the argument parser. Docs that name a flag the code renamed would fail here, not in a reader's shell."""

import argparse
import re
import shlex
from pathlib import Path

import pytest

from numpy_retinanet.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_commands():
    """Every ``numpy-retinanet ...`` line of the README's shell blocks, without its comment and redirections,
    continuation lines (a synopsis's second line) joined to the line before."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        for line in block.splitlines():
            line = re.split(r"\s+#", line)[0].strip()
            if line.startswith("numpy-retinanet "):
                commands.append(line)
            elif line.startswith("[") and commands:  # a synopsis that goes on
                commands[-1] += " " + line
    return [re.sub(r"\s*(\d?>\s*\S+|2>&1|&)(?=\s|$)", "", c) for c in commands]


def _subcommands():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, sub.choices


COMMANDS = _readme_commands()


def test_the_readme_gives_commands_of_every_kind():
    named = {shlex.split(c)[1] for c in COMMANDS}
    assert {"train", "evaluate", "detect", "figures", "check", "ablate", "bench", "export", "convert"} <= named
    assert any("--plan" in c for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_readme_command_is_the_command_lines(command):
    parser, subcommands = _subcommands()
    words = shlex.split(command)[1:]
    if words == ["--version"]:
        assert "--version" in parser._option_string_actions
    elif any(ch in command for ch in "[|"):  # a synopsis: each flag it names is one of its command's
        options = subcommands[words[0]]._option_string_actions
        flags = re.findall(r"(?<![\w-])--[a-z][\w-]*", command)
        assert flags and [f for f in flags if f not in options] == [], command
    else:  # a command to run: the parser takes it as written
        parser.parse_args(words)
