"""The command line as a newcomer meets it: options before or after the subcommand, every
subcommand's --help says what it does, the description once."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from threadlink.cli import build_parser, main

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "x.yaml", "-v", "config", "check"],
        ["config", "check", "--config", "x.yaml", "-v"],
        ["-c", "x.yaml", "config", "check", "--verbose"],
    ],
)
def test_config_and_verbose_before_or_after_the_subcommand(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.config, args.verbose) == ("x.yaml", True)


def test_config_check_with_the_option_after_the_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "threadlink.yaml"
    config.write_text("kafka:\n  namespace: after\n")
    assert main(["config", "check", "--config", str(config)]) == 0
    assert "namespace: after" in capsys.readouterr().out


def leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += leaves(child, (*path, name))
    return found or [(path, parser)]


@pytest.mark.parametrize(
    ("path", "parser"), leaves(build_parser()), ids=lambda p: " ".join(p) if isinstance(p, tuple) else ""
)
def test_every_subcommand_help_describes_it(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    text = parser.format_help()
    description = (parser.description or "").strip()
    assert len(description.split()) >= 4, (path, text)
    for action in parser._actions:
        assert action.help or isinstance(action, argparse._SubParsersAction), (path, action.dest)


def test_the_description_is_printed_once() -> None:
    text = build_parser().format_help()
    assert text.count("threadlink links social threads") == 1
