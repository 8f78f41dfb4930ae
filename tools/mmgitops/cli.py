"""The mmgitops command line."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from mmgitops import __version__, render
from mmgitops.errors import ToolError

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
err = Console(stderr=True)


def repo_root() -> Path:
    out = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    return Path(out.stdout.strip()) if out.returncode == 0 else Path.cwd()


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="mmgitops",
        description="Render, validate and plan the ModelMesh-on-RHOAI 2.x GitOps repository, offline.",
        epilog="Exit status: 0 clean, 1 findings, 2 usage or environment error.",
    )
    top.add_argument("--version", action="version", version=f"mmgitops {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")

    val = sub.add_parser("validate", help="render every kustomization and check every object",
                         description="Render with kustomize v5; check built-in kinds against Kubernetes "
                         "1.31 (OpenShift 4.18) and custom resources against their pinned CRDs, strictly; "
                         "evaluate CEL rules; apply the policy rules; run the Lua health checks.")
    val.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                     help="kustomization directories, trees of them, or YAML files "
                     "(default: components overlays argocd)")
    val.add_argument("--format", choices=("text", "json"), default="text")
    val.add_argument("--crds", type=Path, metavar="DIR",
                     help="read CRDs from DIR instead of the Go modules pinned in pins.toml")

    pl = sub.add_parser("plan", help="print the Argo CD sync order of a bootstrap or profile",
                        description="Print the order Argo CD syncs a bootstrap (app of apps, followed into "
                        "each Application's path) or an overlay in, and fail on ordering violations.")
    pl.add_argument("path", type=Path, metavar="PATH", help="e.g. argocd/bootstrap/serving-gpu or overlays/serving")
    pl.add_argument("--format", choices=("text", "json"), default="text")

    rules = sub.add_parser("rules", help="list the policy rules and why each exists")
    rules.add_argument("--format", choices=("text", "json"), default="text")

    bench = sub.add_parser("bench", help="benchmarks that print figures")
    bench_sub = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)
    bv = bench_sub.add_parser("validate", help="validate vs bare kustomize build, as a ratio")
    bv.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    bv.add_argument("--repeat", type=int, default=3)
    bv.add_argument("--crds", type=Path, metavar="DIR")
    return top


def cmd_validate(args: argparse.Namespace) -> int:
    from mmgitops.schemas import catalog as catalog_mod
    from mmgitops.validate import validate

    paths = args.paths or render.default_paths(repo_root())
    command = render.find_kubectl()
    render.check_kustomize(command)
    with err.status("Loading schemas (first run downloads the pinned Go modules)..."):
        catalog = catalog_mod.build(args.crds)
    with err.status("Rendering and validating..."):
        result = validate(paths, catalog, command)
    if args.format == "json":
        print(result.to_json())
    else:
        for finding in result.findings:
            print(finding.line())
        c = result.counts
        print(f"{c['objects_checked']} objects checked from {c['kustomizations']} kustomizations and "
              f"{c['files']} files ({c['checked_against']['builtin_schema']} built-in, "
              f"{c['checked_against']['crd_schema']} against CRDs, {c['without_schema']} without schema); "
              f"{len(result.findings)} finding(s)")
    return EXIT_FINDINGS if result.findings else EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    from mmgitops.plan import plan as plan_mod

    command = render.find_kubectl()
    render.check_kustomize(command)
    with err.status("Rendering the bootstrap and every application..."):
        result = plan_mod.build(args.path, repo_root(), command)
    print(result.to_json() if args.format == "json" else plan_mod.render_text(result))
    return EXIT_FINDINGS if result.violations else EXIT_OK


def cmd_rules(args: argparse.Namespace) -> int:
    import json

    from mmgitops.checks.policy import RULES

    if args.format == "json":
        print(json.dumps([{"name": r.name, "reason": r.reason, "scope": r.scope} for r in RULES], indent=2))
    else:
        for r in RULES:
            print(f"{r.name:<28} {r.reason}")
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from mmgitops import bench

    paths = args.paths or render.default_paths(repo_root())
    command = render.find_kubectl()
    render.check_kustomize(command)
    with err.status("Benchmarking..."):
        print(bench.run(paths, command, max(1, args.repeat), args.crds))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handlers = {"validate": cmd_validate, "plan": cmd_plan, "rules": cmd_rules, "bench": cmd_bench}
    if args.command not in handlers:
        parser().print_help()
        return EXIT_ERROR
    try:
        return handlers[args.command](args)
    except ToolError as exc:
        err.print(f"mmgitops: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
