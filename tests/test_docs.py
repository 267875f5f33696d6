"""The README and docs/ name only what exists: every repository path (a link, or a backticked path such as
`recipes/cpl/quickstart.yaml`, `posttrain/losses/`, a bundled recipe's short name `cpl/quickstart`), every
`posttrain.x.y` dotted name and every posttrain class name they mention, and every `posttrain …` command:
a command in a code block parses with the CLI's own parser; a command mentioned inline names an existing
command and only flags it has."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import re
import shlex
from functools import cache
from pathlib import Path

import pytest
from helpers import ROOT

DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").rglob("*.md")),
    ROOT / "bench" / "README.md",
    ROOT / "bench" / "gpu" / "README.md",
]
TOP = ("posttrain", "recipes", "launch", "data", "tests", "bench", "docs", ".ci")
ROOT_FILES = ("Makefile", "pyproject.toml", "README.md")
METHODS = ("cpl", "rlbff", "drpo")
PLACEHOLDER = re.compile(r"[<>*{}$…]|\.\.\.|[A-Z]{3,}\b|\b[A-Z]\b")  # <name>, glob, ..., RECIPE, X
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+(?:\n[^`\n]+){0,3})`")  # a span may wrap over lines
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _split(doc: Path) -> tuple[list[str], list[str]]:
    """(code blocks, inline code spans outside code blocks)."""
    text = doc.read_text()
    blocks = FENCE.findall(text)
    prose = FENCE.sub("", text)
    return blocks, INLINE.findall(prose)


def _cases(kind: str):
    cases = []
    for doc in DOCS:
        if not doc.is_file():
            continue
        blocks, spans = _split(doc)
        if kind == "spans":
            cases += [(doc, span) for span in spans]
        elif kind == "code":
            cases += [(doc, text) for text in [*spans, *blocks]]
        elif kind == "links":
            cases += [(doc, target) for target in LINK.findall(FENCE.sub("", doc.read_text()))]
        elif kind == "commands":
            cases += [(doc, cmd, True) for block in blocks for cmd in _commands(block)]
            cases += [(doc, cmd, False) for span in spans for cmd in _commands(span.replace("\n", " "))]
    return cases


# ------------------------------------------------------------------------------------------ paths


OUTPUT_FLAGS = ("--out", "--out-dir", "--output_dir", "-d", "-w", ">", ">>")


def _outputs_removed(text: str) -> str:
    """``text`` without the paths a command creates: mkdir's arguments, cp/mv's destination, an --out value."""
    lines = []
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["mkdir"]:
            continue
        if words[:1] in (["cp"], ["mv"]):
            words = words[:-1]
        words = [w for i, w in enumerate(words) if i == 0 or words[i - 1] not in OUTPUT_FLAGS]
        lines.append(" ".join(words))
    return "\n".join(lines)


def _path_words(span: str) -> list[str]:
    words = []
    for word in re.split(r"[\s,;|()\"'=]+", _outputs_removed(span)):
        word = word.split("::")[0].rstrip(".:")
        if not word or PLACEHOLDER.search(word) or "://" in word:
            continue
        if word in ROOT_FILES or word.split("/")[0] in TOP and "/" in word:
            words.append(word)
        elif re.fullmatch(rf"(?:{'|'.join(METHODS)})/[\w.-]+", word) and not Path(word).suffix:
            words.append(f"recipes/{word}.yaml")  # a bundled recipe's short name
    return words


def _hypothetical(doc: Path) -> tuple[str, ...]:
    """Names a walk-through introduces as examples ("a hypothetical method `simpo`"): files to write."""
    return tuple(re.findall(r"hypothetical \w+ `(\w+)`", doc.read_text()))


def test_every_repository_path_exists():
    missing = sorted(
        {
            f"{_rel(doc)}: {word}"
            for doc, span in _cases("code")
            for word in _path_words(span)
            if not (ROOT / word).exists() and not any(name in word for name in _hypothetical(doc))
        }
    )
    assert not missing, "\n".join(missing)


def _slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_resolves():
    missing = []
    for doc, target in _cases("links"):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            missing.append(f"{_rel(doc)}: {target}")
        elif anchor and file.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", FENCE.sub("", file.read_text()), re.M)
            if anchor not in {_slug(h) for h in headings}:
                missing.append(f"{_rel(doc)}: {target} (no such heading)")
    assert not missing, "\n".join(missing)


# ------------------------------------------------------------------------------- code names


@cache
def _class_names(package: str = "posttrain") -> set[str]:
    folder = Path(importlib.util.find_spec(package).origin).parent
    return {m for path in folder.rglob("*.py") for m in re.findall(r"^class (\w+)", path.read_text(), re.M)}


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for name in parts[i:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def test_every_posttrain_name_exists():
    """`posttrain.a.b` names resolve; class names that look like posttrain's (…Trainer, …Config, …RewardModel)
    are classes of posttrain, TRL or transformers."""
    missing = set()
    for doc, span in _cases("spans"):
        for word in re.findall(r"\bposttrain(?:\.\w+)+", span):
            if not _resolves(word.rstrip(".")):
                missing.add(f"{_rel(doc)}: {word}")
        for name in re.findall(r"^([A-Z]\w*(?:Trainer|Config|RewardModel|Reward))$", span):
            if not any(name in _class_names(package) for package in ("posttrain", "trl", "transformers")):
                missing.add(f"{_rel(doc)}: {name}")
    assert not missing, "\n".join(sorted(missing))


def test_every_import_and_module_run_resolves():
    """`from posttrain.x import A, B` in a code example imports; `python -m bench.x` names a module."""
    missing = set()
    for doc, text in _cases("code"):
        for module, names in re.findall(r"^\s*from (posttrain[\w.]*) import ([\w, ]+)$", text, re.M):
            missing |= {
                f"{_rel(doc)}: from {module} import {name}"
                for name in map(str.strip, names.split(","))
                if name and not _resolves(f"{module}.{name}")
            }
        for module in re.findall(r"-m ((?:bench|posttrain)(?:\.\w+)*)", text):
            if importlib.util.find_spec(module) is None:
                missing.add(f"{_rel(doc)}: -m {module}")
    assert not missing, "\n".join(sorted(missing))


# ---------------------------------------------------------------------------------- commands


def _commands(text: str) -> list[list[str]]:
    """Each `posttrain …` invocation in ``text`` as its argument list (after `posttrain`), with optional
    `[...]` parts, environment assignments and comments left out."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        line = re.sub(r"\s\[[^\]]*\]", "", line)
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        for i, word in enumerate(words):
            if word == "posttrain" and (words[i - 1 : i] == ["-m"] or all("=" in w for w in words[:i])):
                if words[i + 1 : i + 2] not in ([], ["…"], ["..."]):  # `posttrain …` in prose
                    commands.append(words[i + 1 :])
                break
    return commands


@cache
def _parser() -> argparse.ArgumentParser:
    from posttrain import cli

    return cli.build_parser()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def _check_names(argv: list[str]) -> str | None:
    """The command words name a command; every --flag is one of its options."""
    parser, rest = _parser(), list(argv)
    while (choices := _subparsers(parser)) and rest and not rest[0].startswith("-"):
        if rest[0] not in choices:
            return f"no command {rest[0]!r} (choices: {', '.join(choices)})"
        parser = choices[rest.pop(0)]
    if _subparsers(parser) and not rest:
        return None  # a command group named on its own (`posttrain eval`)
    options = {opt for action in parser._actions for opt in action.option_strings}
    unknown = [w.split("=")[0] for w in rest if w.startswith("--") and w.split("=")[0] not in options]
    return f"unknown flags {unknown}" if unknown else None


def _check_parse(argv: list[str]) -> str | None:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            _parser().parse_args(argv)
    except SystemExit:
        return err.getvalue().strip().splitlines()[-1]
    return None


def test_docs_name_commands():
    assert len(_cases("commands")) > 20  # the extraction finds the commands


@pytest.mark.parametrize(
    "doc, argv, full",
    _cases("commands"),
    ids=lambda v: _rel(v) if isinstance(v, Path) else " ".join(v)[:60] if isinstance(v, list) else None,
)
def test_every_posttrain_command_parses(doc, argv, full):
    problem = _check_names(argv) or (_check_parse(argv) if full else None)
    assert problem is None, f"{_rel(doc)}: posttrain {' '.join(argv)}: {problem}"


def test_no_issue_numbers():
    """Docs say what changed, not which tracker item asked for it ("before #7", "issue 13")."""
    jargon = re.compile(r"\bissues? #?\d+|(?<![\w&])#\d+\b", re.I)
    found = [
        f"{_rel(doc)}:{i}: {line.strip()}"
        for doc in DOCS
        if doc.is_file()
        for i, line in enumerate(doc.read_text().splitlines(), 1)
        if jargon.search(line)
    ]
    assert not found, "\n".join(found)
