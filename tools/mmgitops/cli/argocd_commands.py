"""`mmgitops local argocd up | status | down | sync PROFILE`: the real Argo CD on the local cluster."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mmgitops.cli.args import seconds
from mmgitops.cli.common import EXIT_FINDINGS, EXIT_OK, err, print_stopped, progress, repo_root

DEFAULT_TIMEOUT = 900.0


def add_parser(local_sub: argparse._SubParsersAction) -> None:
    la = local_sub.add_parser(
        "argocd", help="start, stop or inspect a real Argo CD on the local cluster, or sync a profile with it",
        description="A real Argo CD (application controller and repo server, built from the pinned argo-cd module) "
        "on the running local cluster, syncing this checkout from a git server on 127.0.0.1. `sync PROFILE` "
        "applies argocd/bootstrap/PROFILE and follows every Application until all are Synced and Healthy. "
        "Uncommitted changes are served as a snapshot commit in the server's own repository; the checkout is "
        "never written to.")
    la.add_argument("action", choices=("up", "down", "status", "sync"))
    la.add_argument("profile", nargs="?", metavar="PROFILE",
                    help="sync: a folder of argocd/bootstrap (e.g. conformance)")
    la.add_argument("--timeout", type=seconds, default=DEFAULT_TIMEOUT, metavar="S",
                    help=f"sync: give up after S seconds (default {DEFAULT_TIMEOUT:.0f})")
    la.add_argument("--format", choices=("text", "json"), default="text")


def cmd_argocd(args: argparse.Namespace) -> int:
    from mmgitops.cli.lab_commands import print_status
    from mmgitops.errors import ToolError
    from mmgitops.lab.argocd import instance

    if args.action == "up":
        with progress("Starting Argo CD...") as status:
            info = instance.up(repo_root(), status)
        print(json.dumps(info, indent=2) if args.format == "json" else describe_up(info))
        return EXIT_OK
    if args.action == "down":
        return print_stopped(instance.down(), "local Argo CD")
    if args.action == "status":
        info = instance.status()
        print_status(info, args.format, "local Argo CD", describe)
        return EXIT_OK if not info["up"] or all(p["running"] for p in info["processes"].values()) else EXIT_FINDINGS
    if not args.profile:
        raise ToolError("sync: name a profile, e.g. `mmgitops local argocd sync conformance`")
    return cmd_sync(args.profile, args.timeout, args.format)


def describe_up(info: dict[str, Any]) -> str:
    snap = info["snapshot"]
    served = f"HEAD {snap['base'][:12]}" + (" with uncommitted changes (a snapshot commit)" if snap["dirty"] else "")
    return (f"Argo CD {info['version']} up in {info['seconds']} s in namespace {info['namespace']}\n"
            f"git server {info['repo_url']} serves {served}\n"
            f"next: mmgitops local argocd sync conformance")


def describe(info: dict[str, Any]) -> str:
    return "\n".join([f"Argo CD {info['version']}, git server {info.get('repo_url', '-')}",
                      *(f"  {name:<24} pid {proc['pid']:<8} {'running' if proc['running'] else 'NOT running'}"
                        for name, proc in info["processes"].items())])


def cmd_sync(profile: str, timeout: float, output: str) -> int:
    from rich.live import Live

    from mmgitops.lab.argocd import sync

    root = repo_root()
    live = Live(console=err, refresh_per_second=2, transient=False) if err.is_terminal else None
    seen: dict[str, tuple[str, str]] = {}

    def show(outcome: sync.Outcome) -> None:
        if live is not None:
            live.update(table(outcome))
            return
        for row in outcome.rows:  # not a terminal: one line per change
            if seen.get(row.name) != (row.sync, row.health):
                seen[row.name] = (row.sync, row.health)
                err.print(f"{outcome.seconds:6.0f} s  {row.name:<28} {row.sync:<10} {row.health:<12} {row.message}",
                          markup=False, highlight=False, soft_wrap=True)

    if live is not None:
        live.start()
    try:
        outcome = sync.run(root, profile, timeout, show)
    finally:
        if live is not None:
            live.stop()
    if output == "json":
        print(json.dumps({"profile": outcome.profile, "root": outcome.root, "commit": outcome.commit,
                          "dirty": outcome.dirty, "done": outcome.done, "seconds": outcome.seconds,
                          "apps": [vars(r) for r in outcome.rows]}, indent=2))
    if outcome.done:
        if output == "text":
            print(f"{profile}: {len(outcome.rows)} apps Synced and Healthy in {outcome.seconds:.0f} s "
                  f"(commit {outcome.commit[:12]})")
        return EXIT_OK
    blocker = outcome.blocker()
    assert blocker is not None
    print(f"{profile}: not Synced and Healthy after {outcome.seconds:.0f} s: {blocker.name} is {blocker.sync}/"
          f"{blocker.health}: {blocker.message or blocker.blocker or 'no message from Argo CD'}", file=sys.stderr)
    return EXIT_FINDINGS


def table(outcome: Any) -> Any:
    from rich.table import Table

    view = Table(title=f"{outcome.profile}: {outcome.seconds:.0f} s, commit {outcome.commit[:12]}"
                 f"{' (uncommitted changes)' if outcome.dirty else ''}", expand=False)
    for column in ("app", "wave", "sync", "health", "message"):
        view.add_column(column, overflow="fold", max_width=90 if column == "message" else None)
    for row in outcome.rows:
        style = "green" if row.done else "yellow" if row.health in ("Progressing", "-", "Missing") else "red"
        view.add_row(row.name, "root" if row.name == outcome.root else str(row.wave), row.sync, row.health,
                     row.message, style=style)
    return view
