"""The mmgitops command line: the top parser, and one exit code per run. Each product's commands live in a
module of their own (gitops_commands, lab_commands, conform_commands)."""

from __future__ import annotations

import argparse
import sys

from mmgitops import __version__
from mmgitops.cli import args as cliargs
from mmgitops.cli import conform_commands, gitops_commands, lab_commands
from mmgitops.cli.common import EXIT_ERROR, err
from mmgitops.errors import ToolError

COMMANDS = (gitops_commands, lab_commands, conform_commands)


def parser() -> argparse.ArgumentParser:
    top = cliargs.Parser(
        prog="mmgitops",
        description="The ModelMesh-on-RHOAI 2.x GitOps repository's tools: validate, plan and apply its profiles "
        "offline or on a cluster, certify a ModelMesh with the conformance suite, and run a local lab.",
        epilog="Exit status: 0 clean, 1 findings, 2 usage or environment error.",
    )
    top.add_argument("--version", action="version", version=f"mmgitops {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    for commands in COMMANDS:
        commands.add_parsers(sub)
    return top


# The extras a command needs beyond the base install (pyproject.toml [project.optional-dependencies]).
EXTRAS = {"local": "lab", "demo": "conformance,lab", "conform": "conformance,lab", "bench": "conformance,lab"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    extra: list[str] = []
    if argv[:1] == ["conform"] and "--" in argv:
        # Split by hand: argparse would read pytest's own options after `--` as the ACTION positional.
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = parser().parse_args(argv)
    args.pytest_args = extra
    handlers = {name: handler for commands in COMMANDS for name, handler in commands.HANDLERS.items()}
    if args.command not in handlers:
        parser().print_help()
        return EXIT_ERROR
    try:
        return handlers[args.command](args)
    except ToolError as exc:
        err.print(f"mmgitops: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_ERROR
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] == "mmgitops":
            raise
        extra = EXTRAS.get(args.command, "conformance,lab")
        err.print(f"mmgitops: error: `mmgitops {args.command}` needs {exc.name}, which the base install leaves out: "
                  f"pip install 'mmgitops[{extra}]'", markup=False, highlight=False, soft_wrap=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
