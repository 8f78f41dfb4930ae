"""Argument types and the parser class of the command line: a bad value is one line naming the option and exit 2,
never a traceback from deep inside a command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """argparse, with its usage block left out of errors: the one line says what is wrong, `--help` says more."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def whole(least: int, most: int | None = None) -> Callable[[str], int]:
    """An integer option of at least `least` (and at most `most`)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < least or (most is not None and value > most):
            raise argparse.ArgumentTypeError(f"{value}: must be " + (f"from {least} to {most}" if most is not None
                                                                      else f"at least {least}"))
        return value
    parse.__name__ = "whole number"
    return parse


def seconds(text: str) -> float:
    """A positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text}: must be a positive number of seconds")
    return value


PORT = whole(1, 65535)
