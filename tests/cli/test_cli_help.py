"""Every subcommand says what it does and every flag has help text; progress bars can be turned off
wherever there are any, and are off when stderr is not a terminal."""
import argparse
import io
import sys

import pytest

from addernet.cli import build_parser, main


def _subcommands():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {a.dest: a.help for a in sub._choices_actions}
    return {name: (p, helps.get(name)) for name, p in sub.choices.items()}


SUBCOMMANDS = sorted(_subcommands())


def test_the_subcommands_are_all_walked():
    assert set(SUBCOMMANDS) >= {"info", "demo", "train", "bench"}


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_flag_has_help(name):
    parser, summary = _subcommands()[name]
    assert summary and len(summary) > 20, f"`addernet --help` has no line for {name}"
    assert parser.description and len(parser.description) > 40, f"`addernet {name} --help` says nothing of it"
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        flag = "/".join(action.option_strings) or action.dest
        assert action.help not in (None, "", argparse.SUPPRESS), f"addernet {name} {flag} has no help text"
        assert len(action.help) >= 10, f"addernet {name} {flag}: help {action.help!r} says too little"


def test_bench_help_says_what_it_does(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for words in ("multiplications", "energy", "time", "AdderNet twin", "--no-latency", "--no-progress"):
        assert words in text, words


# The subcommands that run long work (training, timing) and so show bars on a terminal.
SHOWS_PROGRESS = ("demo", "train", "bench")


@pytest.mark.parametrize("name", SHOWS_PROGRESS)
def test_no_progress_everywhere_bars_are(name):
    parser, _ = _subcommands()[name]
    assert "--no-progress" in parser._option_string_actions, name


def test_bars_only_on_a_terminal(monkeypatch):
    from addernet._progress import progress

    items = [1, 2, 3]
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal: the iterable itself, no bar
    assert progress(items, True, "x") is items

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    bar = progress(items, True, "x")
    assert bar is not items and list(bar) == items  # a terminal: a tqdm bar over the same items
    assert progress(items, False, "x") is items  # --no-progress
