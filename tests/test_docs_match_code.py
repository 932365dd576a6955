"""What the docs name is what the code has. A flag the README, the book's pages, the lessons and the
exercises name exists for its command, and a command the README gives to run passes the argument parser;
a module, function or file of the package that they name exists. Docs that name something the code renamed
or moved fail here, not in a reader's shell."""

import argparse
import importlib
import re
import shlex
from pathlib import Path

import pytest

from numpy_retinanet.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# Where commands are written for readers: the README, the book's own pages, the lessons and the exercises.
DOCS = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "lessons" / "README.md",
        ROOT / "lessons" / "exercises" / "README.md", *sorted((ROOT / "lessons").glob("[0-9]*.py"))]


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


def _inline_commands():
    """(file, command) for every `numpy-retinanet ...` in inline code of the docs, a lesson's comment lines joined."""
    found = []
    for path in DOCS:
        text = path.read_text()
        if path.suffix == ".py":
            text = re.sub(r"\n#\s*", " ", text)  # a markdown cell's lines, without their "# "
        for command in re.findall(r"`(numpy-retinanet [^`]+)`", text):
            found.append((path.relative_to(ROOT).as_posix(), re.sub(r"\s+", " ", command)))
    return found


INLINE = _inline_commands()


def test_the_docs_name_commands_in_their_text():
    assert len(INLINE) > 20 and {f for f, _ in INLINE} >= {"README.md", "docs/index.md", "lessons/README.md"}


@pytest.mark.parametrize("where, command", INLINE)
def test_each_flag_the_docs_name_is_one_of_its_commands(where, command):
    _, subcommands = _subcommands()
    name = command.split()[1]
    assert name in subcommands, f"{where}: no command {name!r}"
    options = subcommands[name]._option_string_actions
    assert [f for f in re.findall(r"(?<![\w-])--[a-z][\w-]*", command) if f not in options] == []


# The layering checker's message, quoted in docs/ARCHITECTURE.md with made-up module names.
QUOTED_EXAMPLES = {"numpy_retinanet.nn.x", "numpy_retinanet.engine.y"}


def _named(pattern):
    return sorted({(path.relative_to(ROOT).as_posix(), name) for path in DOCS
                   for name in re.findall(pattern, path.read_text())})


def _resolves(dotted):
    """Whether ``numpy_retinanet.a.b.c`` is a module of the package or an attribute of one."""
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        for attr in parts[k:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize("where, dotted", [w for w in _named(r"numpy_retinanet(?:\.[A-Za-z_]\w*)+")
                                           if w[1] not in QUOTED_EXAMPLES])
def test_each_module_or_function_the_docs_name_exists(where, dotted):
    assert _resolves(dotted), f"{where} names {dotted}"


@pytest.mark.parametrize("where, path", _named(
    r"(?<![\w/.])((?:nn|detection|model|data|evaluation|engine|teaching|tools)/[\w/]+\.py)"))
def test_each_file_of_the_package_the_docs_name_exists(where, path):
    assert (ROOT / "numpy_retinanet" / path).is_file(), f"{where} names {path}"

