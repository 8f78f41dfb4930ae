"""The GitOps commands: validate, plan, rules, apply."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmgitops.cli.args import seconds
from mmgitops.cli.common import EXIT_FINDINGS, EXIT_OK, err, kustomize, repo_root
from mmgitops.errors import ToolError
from mmgitops.gitops import render


def add_parsers(sub: argparse._SubParsersAction) -> None:
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
    val.add_argument("--cluster", action="store_true",
                     help="read the ModelMesh rules' context (runtimes, storage-config key names, namespace labels, "
                     "data connections, model-serving-config) from a cluster too; read-only, never a secret value")
    val.add_argument("--kubeconfig", metavar="FILE", help="with --cluster; default: $KUBECONFIG or ~/.kube/config")

    pl = sub.add_parser("plan", help="print the Argo CD sync order of a bootstrap or profile",
                        description="Print the order Argo CD syncs a bootstrap (app of apps, followed into "
                        "each Application's path) or an overlay in, and fail on ordering violations.")
    pl.add_argument("path", type=Path, metavar="PATH", help="e.g. argocd/bootstrap/serving-gpu or overlays/serving")
    pl.add_argument("--format", choices=("text", "json"), default="text")

    rules = sub.add_parser("rules", help="list the rules, or explain one: what it checks, its source, the "
                           "symptom on a cluster, the fix")
    rules.add_argument("rule", nargs="?", metavar="RULE", help="a rule's name, e.g. mm-isvc-runtime-match")
    rules.add_argument("--format", choices=("text", "json"), default="text")

    ap = sub.add_parser("apply", help="server-side apply a profile in Argo CD's order, waiting between waves",
                        description="Apply an overlay to any cluster in Argo CD's order (phase, wave, kind, name). "
                        "Before each wave it waits until the kinds it needs are served and the previous wave is "
                        "healthy, by the same rules as the Lua health checks in argocd/.")
    ap.add_argument("path", type=Path, metavar="PATH", help="e.g. overlays/serving-gpu")
    ap.add_argument("--kubeconfig", metavar="FILE", help="default: $KUBECONFIG or ~/.kube/config")
    ap.add_argument("--dry-run", choices=("none", "server"), default="none",
                    help="server: let the API server validate every object and persist nothing")
    ap.add_argument("--timeout", type=seconds, default=300.0, metavar="SECONDS", help="per wait (default 300)")


def cmd_validate(args: argparse.Namespace) -> int:
    from mmgitops.gitops.schemas import catalog as catalog_mod
    from mmgitops.gitops.validate import validate

    paths = args.paths or render.default_paths(repo_root())
    if args.kubeconfig and not args.cluster:
        raise ToolError("--kubeconfig is for --cluster")
    live = None
    if args.cluster:
        from mmgitops import kubeconfig
        from mmgitops.gitops.checks.modelmesh import live as live_mod

        api = kubeconfig.api_client(args.kubeconfig)
        live = lambda namespaces: live_mod.read(api, namespaces)  # noqa: E731
    command = kustomize()
    with err.status("Loading schemas (first run downloads the pinned Go modules)..."):
        catalog = catalog_mod.build(args.crds)
    with err.status("Rendering and validating" + (" against the cluster..." if live else "...")):
        result = validate(paths, catalog, command, live)
    if args.format == "json":
        print(result.to_json())
    else:
        for finding in result.findings:
            print(finding.line())
        c = result.counts
        print(f"{c['objects_checked']} objects checked from {c['kustomizations']} kustomizations and "
              f"{c['files']} files ({c['checked_against']['builtin_schema']} built-in, "
              f"{c['checked_against']['crd_schema']} against CRDs, {c['without_schema']} without schema); "
              f"{c['findings']} finding(s)" + (f", {c['warnings']} warning(s)" if c["warnings"] else ""))
    return EXIT_FINDINGS if result.errors() else EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    from mmgitops.gitops.plan import plan as plan_mod

    command = kustomize()
    with err.status("Rendering the bootstrap and every application..."):
        result = plan_mod.build(args.path, repo_root(), command)
    print(result.to_json() if args.format == "json" else plan_mod.render_text(result))
    return EXIT_FINDINGS if result.violations else EXIT_OK


def cmd_rules(args: argparse.Namespace) -> int:
    import difflib
    import json

    from mmgitops.gitops.validate import all_rules

    known = all_rules()
    if args.rule:
        chosen = [r for r in known if r.name == args.rule]
        if not chosen:
            near = difflib.get_close_matches(args.rule, [r.name for r in known], n=3)
            raise ToolError(f"no rule {args.rule!r}" + (f"; did you mean {', '.join(near)}?" if near else
                                                         "; `mmgitops rules` lists them"))
        known = chosen
    fields = ("name", "scope", "reason", "source", "symptom", "fix")
    if args.format == "json":
        print(json.dumps([{f: getattr(r, f) for f in fields} for r in known], indent=2))
    elif args.rule:
        for f in fields:
            value = getattr(known[0], f)
            if value:
                print(f"{f + ':':<9}{value}")
    else:
        for r in known:
            print(f"{r.name:<30} {r.reason}")
    return EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    from mmgitops.gitops.apply import apply as apply_mod

    command = kustomize()
    if args.kubeconfig and not Path(args.kubeconfig).is_file():
        raise ToolError(f"--kubeconfig {args.kubeconfig}: no such file")
    dry = args.dry_run == "server"
    from kubernetes.config.config_exception import ConfigException
    from urllib3.exceptions import HTTPError

    try:
        with err.status("Rendering...") as status:
            outcome = apply_mod.run(args.path, repo_root(), command, args.kubeconfig, dry, args.timeout,
                                    lambda text: status.update(text))
    except ConfigException as exc:
        raise ToolError(f"no usable kubeconfig ({exc}): pass --kubeconfig FILE or set KUBECONFIG; "
                        "`mmgitops local cluster status` shows the local cluster's") from exc
    except HTTPError as exc:
        raise ToolError(f"cannot reach the API server: {str(exc).splitlines()[0][:200]}") from exc
    for ref, result in outcome.applied:
        print(f"{ref} {result}{' (server dry run)' if dry else ''}")
    for ref, why in outcome.skipped:
        print(f"{ref} skipped: {why}")
    for finding in outcome.findings:
        print(finding.line())
    print(apply_mod.summary(outcome, dry) + (f"; {len(outcome.findings)} error(s)" if outcome.findings else ""))
    return EXIT_FINDINGS if outcome.findings else EXIT_OK


HANDLERS = {"validate": cmd_validate, "plan": cmd_plan, "rules": cmd_rules, "apply": cmd_apply}
