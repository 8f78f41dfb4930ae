"""The lab's commands: `local build | cluster | mesh | argocd`, and `demo`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmgitops.cli import argocd_commands
from mmgitops.cli.args import whole
from mmgitops.cli.common import EXIT_FINDINGS, EXIT_OK, print_stopped, progress, repo_root
from mmgitops.errors import ToolError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    local = sub.add_parser("local", help="the local target: a real control plane with simulated GPU nodes")
    local_sub = local.add_subparsers(dest="local", metavar="WHAT", required=True)
    lb = local_sub.add_parser("build", help="build (or find cached) kube-apiserver, controller-manager, scheduler, "
                              "etcd, kwok, Argo CD, kustomize and the modelmesh-serving controller from the versions "
                              "pinned in pins.toml; or the reference pods")
    lb.add_argument("build_what", nargs="?", choices=("cluster", "argocd", "controller", "reference", "all"),
                    default="cluster", metavar="WHAT",
                    help="cluster (default): the local cluster's binaries, Argo CD's and the controller; argocd: only "
                    "Argo CD's application controller and repo server, and kustomize; controller: only RHOAI's "
                    "modelmesh-serving controller, from its source tarball; reference: ModelMesh, rest-proxy and the "
                    "MLServer adapter from the upstream source tarballs; all: everything `make test` uses (cluster, "
                    "the Argo CD Lua health runner and reference)")
    lb.add_argument("--source", type=Path, metavar="DIR",
                    help="controller, reference: the directory of the upstream tarballs (default: "
                    "$MMGITOPS_REFERENCE_SOURCES, else ../shared/reference/upstream beside the checkout)")
    lc = local_sub.add_parser("cluster", help="start, stop or inspect the local cluster; kubeconfig: act as one of "
                              "its ServiceAccounts")
    lc.add_argument("action", choices=("up", "down", "status", "kubeconfig"))
    lc.add_argument("--format", choices=("text", "json"), default="text")
    lc.add_argument("--service-account", metavar="NS/NAME",
                    help="kubeconfig: write a kubeconfig whose only credentials are a token of this ServiceAccount "
                    "(2 h), e.g. mmgitops-conformance/conformance-runner, the conformance profile's runner")
    lc.add_argument("--output", type=Path, metavar="FILE",
                    help="kubeconfig: where to write it (default: NAME.kubeconfig in the cluster's state directory)")
    lc.add_argument("--engine", choices=("embedded", "reference"), default="embedded",
                    help="up: what plays each runtime pod the ModelMesh controller (RHOAI 2.25's modelmesh-serving, "
                    "built from its source) makes: an embedded local-mesh instance (default) or a reference pod, the "
                    "real ModelMesh data plane built from sources. `up` needs root: the pods run in a network "
                    "namespace")
    mesh_parser(local_sub)
    argocd_commands.add_parser(local_sub)
    demo = sub.add_parser("demo", help="local cluster + the conformance profile synced by Argo CD + the suite in "
                          "cluster mode (what `make demo` runs)",
                          description="Starts the local cluster and a real Argo CD on it (or reuses them), has Argo "
                          "CD sync argocd/bootstrap/conformance until every app is Synced and Healthy, runs the "
                          "conformance suite in cluster mode against it and prints the report's path. With --apply, "
                          "`mmgitops apply overlays/conformance` installs the profile instead of Argo CD. Everything "
                          "stays up: `mmgitops local cluster down` stops it.")
    demo.add_argument("--apply", action="store_true",
                      help="install the profile with `mmgitops apply overlays/conformance` (wave order, health "
                      "waits) instead of Argo CD")
    demo.add_argument("--report", type=Path, default=Path("reports/demo"), metavar="DIR",
                      help="where the report goes (default: reports/demo)")
    demo.add_argument("--engine", choices=("embedded", "reference"), default=None,
                      help="what backs the runtime pods of a cluster the demo starts (default: embedded; a running "
                      "cluster keeps its own)")


def mesh_parser(local_sub: argparse._SubParsersAction) -> None:
    from mmgitops.lab.mesh.faults import FAULTS
    from mmgitops.modelmesh.defaults import MIN_CHURN_AGE_MS, UNIT_BYTES

    lm = local_sub.add_parser(
        "mesh", help="start, stop or inspect the local mesh (a ModelMesh-compatible data plane for tests)",
        description="The local mesh: N instance processes, each with a real MLServer behind the ModelRuntime "
        "SPI, a registry in etcd and models in S3 (a moto server unless --storage-config is given), all on "
        "127.0.0.1. It is a test target for the conformance suite, not a production server.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="fault switches (test-only, off by default):\n" + "\n".join(
            f"  {name:<16} {why}" for name, why in FAULTS.items()))
    lm.add_argument("action", choices=("up", "down", "status", "kill"))
    lm.add_argument("pod", nargs="?", metavar="POD",
                    help="kill: the instance id of the pod to kill abruptly (SIGKILL to its process group, as a node "
                    "loss would), e.g. for `conform --kill-command`")
    lm.add_argument("--instances", type=whole(1), default=3, metavar="N", help="instance processes (default 3)")
    lm.add_argument("--capacity", type=whole(UNIT_BYTES), default=64 * 2**20, metavar="BYTES",
                    help="model cache per instance, as the runtime reports it (default 64 MiB)")
    lm.add_argument("--min-churn-age-ms", type=whole(0), default=MIN_CHURN_AGE_MS, metavar="MS",
                    help="refuse a load that would evict a model used this recently "
                    f"(default {MIN_CHURN_AGE_MS}, ModelMesh's)")
    lm.add_argument("--load-timeout-ms", type=whole(100), default=90_000, metavar="MS", help="default 90000")
    lm.add_argument("--max-loading-concurrency", type=whole(1), default=2, metavar="N", help="per instance (default 2)")
    lm.add_argument("--samples", type=whole(0), default=4, metavar="N",
                    help="sample sklearn models to train, upload and register as vmodels sample-00.. (default 4)")
    lm.add_argument("--no-register", action="store_true", help="upload the samples but register nothing")
    lm.add_argument("--storage-config", type=Path, metavar="FILE",
                    help="a storage-config JSON with a storage named local-s3 to use instead of a moto server")
    lm.add_argument("--fault", action="append", default=[], choices=sorted(FAULTS), metavar="NAME",
                    help="turn on a test-only fault switch (repeatable; listed below)")
    lm.add_argument("--engine", choices=("embedded", "reference"), default="embedded",
                    help="embedded (default): this package's instances; reference: real ModelMesh pods built from "
                    "the upstream sources (`mmgitops local build reference`), in a private network namespace")
    lm.add_argument("--format", choices=("text", "json"), default="text")


def cmd_local(args: argparse.Namespace) -> int:
    import json

    from mmgitops.lab.cluster import cluster

    if args.local == "mesh":
        return cmd_mesh(args)
    if args.local == "argocd":
        return argocd_commands.cmd_argocd(args)
    if args.local == "build":
        return cmd_build(args)
    if args.action == "up":
        with progress("Starting the local cluster...") as status:
            info = cluster.up(status, args.engine)
        print(json.dumps(info, indent=2) if args.format == "json" else
              f"local cluster up in {info['seconds']} s: API server {info['server']}\n"
              f"ModelMesh controller: {info['controller']}; runtime pods backed by the {info['engine']} mesh "
              "engine\n"
              f"kubeconfig: {info['kubeconfig']}\n"
              f"S3 server {info['s3']}, storage config {info['storage_config']}\n"
              f"next: mmgitops apply overlays/conformance --kubeconfig {info['kubeconfig']} (or: make demo)")
        return EXIT_OK
    if args.action == "kubeconfig":
        print(service_account_kubeconfig(args.service_account, args.output))
        return EXIT_OK
    if args.action == "down":
        from mmgitops.lab.argocd import instance

        # Argo CD first: its controller would otherwise spend its last seconds on a vanished API server.
        return print_stopped([*instance.down(), *cluster.down()], "local cluster")
    info = cluster.status()
    print_status(info, args.format, "local cluster", describe_cluster)
    return EXIT_OK if not info["up"] or all(p["running"] for p in info["processes"].values()) else EXIT_FINDINGS


def service_account_kubeconfig(account: str | None, output: Path | None) -> Path:
    from mmgitops.lab.cluster import cluster, identity

    if not account:
        raise ToolError("local cluster kubeconfig: name the account with --service-account NAMESPACE/NAME (the admin "
                        "kubeconfig's path is in `mmgitops local cluster status`)")
    namespace, _, name = account.partition("/")
    if not namespace or not name:
        raise ToolError(f"--service-account {account}: expected NAMESPACE/NAME")
    info = cluster.read_state()
    if info is None:
        raise ToolError("no local cluster is up: `mmgitops local cluster up` first")
    if output is not None and output.exists():
        raise ToolError(f"--output {output}: exists; choose another file (the command never overwrites one it did "
                        "not make)")
    admin = Path(info["kubeconfig"])
    return identity.service_account_kubeconfig(admin, namespace, name, output or admin.parent / f"{name}.kubeconfig")


def print_status(info: dict[str, Any], output: str, what: str, describe: Callable[[dict[str, Any]], str]) -> None:
    import json

    print(json.dumps(info, indent=2) if output == "json" else describe(info) if info["up"] else f"no {what}")


def describe_cluster(info: dict[str, Any]) -> str:
    return "\n".join([f"API server {info['server']}, kubeconfig {info['kubeconfig']}, mesh engine {info['engine']}, "
                       f"ModelMesh controller {info.get('controller', '?')}",
                      *([f"audit log {info['audit_log']}"] if info.get("audit_log") else []),
                      *(f"  {name:<24} pid {proc['pid']:<8} {'running' if proc['running'] else 'NOT running'}"
                        for name, proc in info["processes"].items())])


def cmd_build(args: argparse.Namespace) -> int:
    """`local build WHAT`: each WHAT builds what its commands need; `all` is what `make test` builds before its tiers
    start (a part whose source tarball is missing is named and left out: the tests that need it are skipped)."""
    import time

    from mmgitops.lab import binaries, builds, prereqs
    from mmgitops.lab.argocd import build as argocd_build
    from mmgitops.lab.argocd import luahealth
    from mmgitops.lab.controller import build as controller_build
    from mmgitops.lab.reference import build as reference_build

    what = args.build_what
    if args.source is not None and not args.source.is_dir():
        raise ToolError(f"--source {args.source}: not a directory (it holds the upstream source tarballs)")
    prereqs.check(f"`local build {what}`", "build", *(("reference",) if what in ("reference", "all") else ()))
    if what == "reference":
        return cmd_build_reference(args)
    if what == "controller":
        return cmd_build_controller(args)
    uses = {"argocd": ("argocd",), "cluster": ("cluster",), "all": ("cluster", "luahealth", "reference")}[what]
    planned = builds.summary(builds.pending(*uses))
    if planned:
        print(f"local build {what}: {planned}", flush=True)
    started = time.monotonic()
    paths: list[Path] = []
    built: list[str] = []
    skipped: list[str] = []
    with progress("Checking the binary cache...") as status:
        def building(text: str) -> None:
            status(f"Building {text}")

        if "cluster" in uses:
            bins, built = binaries.ensure(building)
            paths += bins.all()
        argocd_bins, argocd_built = argocd_build.ensure(building)
        paths += argocd_bins.all()
        built += argocd_built
        if "cluster" in uses:
            try:
                controller_build.source(args.source)
            except ToolError as error:  # the rest is still worth building; `local cluster up` will say it too
                skipped.append(f"not built: the ModelMesh controller, which `local cluster up` needs ({error})")
            else:
                controller = controller_build.ensure(building, args.source)
                paths.append(controller.binary)
                built += [f"controller {controller.commit[:8]}"] if controller.built else []
        if "luahealth" in uses:
            paths.append(luahealth.ensure(building))
        if "reference" in uses:
            try:
                reference_build.find_sources(args.source)
            except ToolError as error:
                skipped.append(f"not built: the reference pods ({error})")
            else:
                ref = reference_build.build(args.source, building)
                paths += [ref.modelmesh_home, ref.rest_proxy, ref.adapter]
                built += ref.built
    for path in paths:
        print(path)
    for line in skipped:
        print(line)
    done = f"built {', '.join(built)}" if built else "all cached"
    print(f"{done} in {time.monotonic() - started:.0f} s; cache {binaries.cache_size() / 2**20:.0f} MiB")
    return EXIT_OK


def cmd_build_reference(args: argparse.Namespace) -> int:
    import time

    from mmgitops.lab.reference import build

    started = time.monotonic()
    with progress("Checking the reference build cache...") as status:
        built = build.build(args.source, lambda text: status(f"Building {text}"))
    for path in (built.modelmesh_home, built.rest_proxy, built.adapter):
        print(path)
    done = ", ".join(f"{part} in {built.seconds[part.split()[0]]:.0f} s" for part in built.built)
    print(f"{'built ' + done if built.built else 'all cached'}; {time.monotonic() - started:.0f} s in all "
          f"(JDK {built.java_home})")
    return EXIT_OK


def cmd_build_controller(args: argparse.Namespace) -> int:
    from mmgitops.lab.controller import build

    with progress("Checking the controller build cache...") as status:
        built = build.ensure(lambda text: status(f"Building {text}"), args.source)
    print(f"{built.binary} (run in {built.tree}), modelmesh-serving {built.commit[:8]}: "
          f"{f'built in {built.seconds:.0f} s' if built.built else 'cached'}")
    return EXIT_OK


def cmd_mesh(args: argparse.Namespace) -> int:
    import json

    from mmgitops.lab.mesh import control

    if args.action == "up":
        options = control.Options(
            instances=args.instances, capacity_bytes=args.capacity, min_churn_age_ms=args.min_churn_age_ms,
            load_timeout_ms=args.load_timeout_ms, max_loading_concurrency=args.max_loading_concurrency,
            samples=args.samples, register_samples=not args.no_register, storage_config=args.storage_config,
            faults=args.fault, engine=args.engine)
        with progress("Starting the local mesh...") as status:
            state = control.up(options, status)
        print(json.dumps(state, indent=2) if args.format == "json" else control.describe(state))
        return EXIT_OK
    if args.action == "down":
        return print_stopped(control.down(), "local mesh")
    if args.action == "kill":
        if not args.pod:
            raise ToolError("kill: name the pod, e.g. `mmgitops local mesh kill mm-0` (`status` lists them)")
        print(control.kill(args.pod))
        return EXIT_OK
    info = control.status()
    print_status(info, args.format, "local mesh", control.describe)
    running = [i.get("running", True) for i in info.get("instances", [])]
    return EXIT_OK if all(running) else EXIT_FINDINGS


def cmd_demo(args: argparse.Namespace) -> int:
    import time

    from mmgitops.cli import demo
    from mmgitops.lab import prereqs

    # Everything the whole demo needs, before the first step builds or starts anything.
    prereqs.check("`demo`", "cluster" if args.apply else "demo",
                  *(("reference",) if args.engine == "reference" else ()))
    plan, steady = demo.plan(args.engine or "embedded", not args.apply)
    print(plan, flush=True)
    started = time.monotonic()
    with progress("Preparing the local cluster...") as status:
        info = demo.prepare(repo_root(), status, args.engine, not args.apply)
    prepared = time.monotonic() - started
    installed = info["installed"]
    print(f"local cluster ready and {installed['profile']} installed by {installed['by']} in {prepared:.0f} s; "
          f"kubeconfig {info['kubeconfig']}; runtime pods backed by the {info.get('engine', 'embedded')} mesh engine")
    code = demo.conform(info, args.report)
    if steady and code == 0:
        demo.record(time.monotonic() - started)
    print(f"demo finished in {time.monotonic() - started:.0f} s (cluster and apply {prepared:.0f} s), "
          f"exit {code}\nreport: {(args.report / 'report.html').resolve()}\n"
          f"the local cluster is still up: `mmgitops local cluster down` stops it (and its Argo CD)")
    return code


HANDLERS = {"local": cmd_local, "demo": cmd_demo}
