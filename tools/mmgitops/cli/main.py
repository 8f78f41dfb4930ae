"""The mmgitops command line."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from mmgitops import __version__
from mmgitops.cli import args as cliargs
from mmgitops.cli.args import PORT, seconds, whole
from mmgitops.errors import ToolError
from mmgitops.gitops import render

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
err = Console(stderr=True)


def repo_root() -> Path:
    out = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    return Path(out.stdout.strip()) if out.returncode == 0 else Path.cwd()


def parser() -> argparse.ArgumentParser:
    top = cliargs.Parser(
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

    ap = sub.add_parser("apply", help="server-side apply a profile in Argo CD's order, waiting between waves",
                        description="Apply an overlay to any cluster in Argo CD's order (phase, wave, kind, name). "
                        "Before each wave it waits until the kinds it needs are served and the previous wave is "
                        "healthy, by the same rules as the Lua health checks in argocd/.")
    ap.add_argument("path", type=Path, metavar="PATH", help="e.g. overlays/serving-gpu")
    ap.add_argument("--kubeconfig", metavar="FILE", help="default: $KUBECONFIG or ~/.kube/config")
    ap.add_argument("--dry-run", choices=("none", "server"), default="none",
                    help="server: let the API server validate every object and persist nothing")
    ap.add_argument("--timeout", type=seconds, default=300.0, metavar="SECONDS", help="per wait (default 300)")

    local = sub.add_parser("local", help="the local target: a real control plane with simulated GPU nodes")
    local_sub = local.add_subparsers(dest="local", metavar="WHAT", required=True)
    lb = local_sub.add_parser("build", help="build (or find cached) kube-apiserver, controller-manager, scheduler, "
                              "etcd and kwok from the versions pinned in pins.toml; or the reference pods")
    lb.add_argument("build_what", nargs="?", choices=("cluster", "reference"), default="cluster", metavar="WHAT",
                    help="cluster (default): the local cluster's binaries; reference: ModelMesh, rest-proxy and "
                    "the MLServer adapter from the upstream source tarballs")
    lb.add_argument("--source", type=Path, metavar="DIR",
                    help="reference: the directory of the upstream tarballs (default: $MMGITOPS_REFERENCE_SOURCES, "
                    "else ../shared/reference/upstream beside the checkout)")
    lc = local_sub.add_parser("cluster", help="start, stop or inspect the local cluster")
    lc.add_argument("action", choices=("up", "down", "status"))
    lc.add_argument("--format", choices=("text", "json"), default="text")
    lc.add_argument("--engine", choices=("embedded", "reference"), default="embedded",
                    help="up: what backs each runtime pod: an embedded local-mesh instance (default) or a reference "
                    "pod, the real ModelMesh data plane built from sources (root needed)")
    mesh_parser(local_sub)

    bench_parser(sub)
    conform_parser(sub)
    demo = sub.add_parser("demo", help="local cluster + the conformance profile + the suite in cluster mode "
                          "(what `make demo` runs)",
                          description="Starts the local cluster (or reuses it), applies overlays/conformance in "
                          "wave order until healthy, runs the conformance suite in cluster mode against it and "
                          "prints the report's path. The cluster stays up: `mmgitops local cluster down` stops it.")
    demo.add_argument("--report", type=Path, default=Path("reports/demo"), metavar="DIR",
                      help="where the report goes (default: reports/demo)")
    demo.add_argument("--engine", choices=("embedded", "reference"), default=None,
                      help="what backs the runtime pods of a cluster the demo starts (default: embedded; a running "
                      "cluster keeps its own)")
    return top


def bench_parser(sub: argparse._SubParsersAction) -> None:
    from mmgitops.lab.mesh.bench_report import engines

    bench = sub.add_parser("bench", help="benchmarks that print figures")
    bench_sub = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)
    bv = bench_sub.add_parser("validate", help="validate vs bare kustomize build, as a ratio")
    bv.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    bv.add_argument("--repeat", type=whole(1), default=3)
    bv.add_argument("--crds", type=Path, metavar="DIR")
    bm = bench_sub.add_parser("mesh", help="the local mesh: added latency, throughput, cold loads, density",
                              description="For each engine, in turn, starts a fresh local mesh (named bench) twice "
                              "and measures: warm p50/p99 and throughput through the mesh (on the pod holding the "
                              "copy and forwarded) vs straight to that pod's MLServer, cold-load p50/p95, and "
                              "hot-set latency with many more models registered than fit. Prints a column per "
                              "engine. Takes a few minutes per engine.")
    bm.add_argument("--engine", type=engines, default=["embedded"], metavar="ENGINE[,ENGINE]",
                    help="embedded (default), reference, or both comma-separated (run in that order, one table)")
    bm.add_argument("--requests", type=whole(1), default=2000, metavar="N", help="sequential requests per path")
    bm.add_argument("--seconds", type=seconds, default=5.0, help="throughput run per path")
    bm.add_argument("--clients", type=whole(1), default=4, help="concurrent clients in the throughput run")
    bm.add_argument("--cold-loads", type=whole(1), default=40, metavar="N")
    bm.add_argument("--models", type=whole(1), default=1000, metavar="N", help="registered models in the density run")
    bm.add_argument("--hot", type=whole(1), default=50, metavar="N", help="hot set in the density run")
    bm.add_argument("--rounds", type=whole(1), default=10, metavar="N", help="passes over the hot set")
    bc = bench_sub.add_parser("conform", help="the conformance suite: its wall time and the harness's overhead",
                              description="Prints the harness's overhead per inference (a request through the "
                              "suite's target against a bare gRPC stub call to the same local mesh pod, "
                              "interleaved) and the wall time of the whole suite on the embedded local mesh. "
                              "Takes about 3 minutes.")
    bc.add_argument("--repeats", type=whole(1), default=2000, metavar="N", help="requests per path (default 2000)")
    bc.add_argument("--no-suite", action="store_true", help="skip the suite's wall time (the slow part)")
    for each in (bv, bm, bc):
        each.add_argument("--format", choices=("text", "json"), default="text",
                          help="json: one JSON object with the same figures, as numbers (default text)")


def conform_parser(sub: argparse._SubParsersAction) -> None:
    co = sub.add_parser(
        "conform", help="run the ModelMesh conformance suite (pytest --pyargs mmgitops.conformance.checks)",
        usage="mmgitops conform [options] [-- PYTEST_ARGS...]\n       mmgitops conform report DIR\n"
        "       mmgitops conform cleanup [--kubeconfig FILE] [--context NAME]",
        description="Run the conformance checks against a target. With no --endpoint the suite starts a small "
        "local mesh of its own and stops it after (~30 s). Arguments after `--` go to pytest as they are.",
        epilog="Exit status: 0 every check passed, 1 a check failed, 2 usage or environment error.")
    co.add_argument("--target", choices=("mesh", "cluster"),
                    help="mesh: ModelMesh pods by endpoint, or the embedded local mesh (default); cluster: a "
                    "namespace of the run's own on the kubeconfig's cluster (needs --storage-config)")
    co.add_argument("--endpoint", default="", metavar="POD=HOST:PORT,...",
                    help="gRPC endpoints of running ModelMesh pods, each with its pod's name (ModelMesh names a "
                    "copy's location by it) (default: start a local mesh); needs --storage-config")
    co.add_argument("--engine", choices=("embedded", "reference"),
                    help="the local mesh the suite starts without --endpoint: the embedded one (default) or "
                    "reference pods built from ModelMesh's sources (`mmgitops local build reference`)")
    co.add_argument("--report", type=Path, metavar="DIR",
                    help="write DIR/junit.xml, DIR/results.json and DIR/report.html")
    co.add_argument("-m", dest="markexpr", default="", metavar="MARKEXPR",
                    help="only the checks this marker expression selects, e.g. 'routing or eviction'")
    st = co.add_argument_group("sample models (--target cluster, --endpoint)")
    st.add_argument("--storage-config", type=Path, metavar="FILE",
                    help="JSON storage-config (key -> S3 storage) the runtime pods can pull from; the suite "
                    "stages its sample models there and removes them after")
    st.add_argument("--storage-key", metavar="KEY", help="the storage to use when FILE has several")
    ep = co.add_argument_group("given endpoints (--endpoint)")
    ep.add_argument("--gpu-endpoint", default="", metavar="POD=HOST:PORT",
                    help="the one pod of a single-replica GPU runtime, for the packing checks")
    for port, default, what in (("rest", 8008, "REST proxy"), ("metrics", 2112, "metrics (https or http)"),
                                ("probe", 8089, "readiness probe")):
        ep.add_argument(f"--{port}-port", type=PORT, metavar="PORT", help=f"the pods' {what} port (default {default})")
    ep.add_argument("--kill-command", default="", metavar="TEMPLATE",
                    help="a shell command that kills a pod abruptly, with {pod}, {instance}, {host} and {port} "
                    "filled in, e.g. 'oc delete pod {pod} --grace-period=0'; without it resilience is skipped")
    cl = co.add_argument_group("cluster target")
    cl.add_argument("--kubeconfig", metavar="FILE", help="default: $KUBECONFIG or ~/.kube/config")
    cl.add_argument("--context", metavar="NAME", help="kubeconfig context (default: the current one)")
    cl.add_argument("--resolver", choices=("port-forward", "annotation"),
                    help="how the suite reaches runtime pods (default: port-forward)")
    co_sub = co.add_subparsers(dest="conform", metavar="ACTION")
    rep = co_sub.add_parser("report", help="re-render DIR/report.html from DIR/results.json")
    rep.add_argument("dir", type=Path, metavar="DIR")
    clean = co_sub.add_parser("cleanup", help="remove what interrupted runs left: local meshes named conf-<hex>, "
                              "and with --kubeconfig/--context the cluster namespaces labelled by the suite "
                              "and the sample models their runs staged in S3")
    clean.add_argument("--kubeconfig", dest="cleanup_kubeconfig", metavar="FILE")
    clean.add_argument("--context", dest="cleanup_context", metavar="NAME")


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


def cmd_validate(args: argparse.Namespace) -> int:
    from mmgitops.gitops.schemas import catalog as catalog_mod
    from mmgitops.gitops.validate import validate

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
    from mmgitops.gitops.plan import plan as plan_mod

    command = render.find_kubectl()
    render.check_kustomize(command)
    with err.status("Rendering the bootstrap and every application..."):
        result = plan_mod.build(args.path, repo_root(), command)
    print(result.to_json() if args.format == "json" else plan_mod.render_text(result))
    return EXIT_FINDINGS if result.violations else EXIT_OK


def cmd_rules(args: argparse.Namespace) -> int:
    import json

    from mmgitops.gitops.checks.policy import RULES

    if args.format == "json":
        print(json.dumps([{"name": r.name, "reason": r.reason, "scope": r.scope} for r in RULES], indent=2))
    else:
        for r in RULES:
            print(f"{r.name:<28} {r.reason}")
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from mmgitops.gitops import bench

    if args.bench == "mesh":
        from mmgitops.lab.mesh import bench as mesh_bench

        with err.status("Benchmarking the local mesh...") as status:
            text, complete = mesh_bench.run(lambda text: status.update(text), args.engine, args.requests,
                                            args.seconds, args.clients, args.cold_loads, args.models, args.hot,
                                            args.rounds, args.format)
        print(text)
        # An engine that measured nothing (its mesh never started) is a failed bench, though the table printed.
        return EXIT_OK if complete else EXIT_FINDINGS
    if args.bench == "conform":
        from mmgitops.cli import conform_bench

        with err.status("Benchmarking the conformance suite...") as status:
            print(conform_bench.run(lambda text: status.update(text), args.repeats, not args.no_suite, args.format))
        return EXIT_OK

    paths = args.paths or render.default_paths(repo_root())
    command = render.find_kubectl()
    render.check_kustomize(command)
    with err.status("Benchmarking..."):
        print(bench.run(paths, command, args.repeat, args.crds, args.format))
    return EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    from mmgitops.gitops.apply import apply as apply_mod

    command = render.find_kubectl()
    render.check_kustomize(command)
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


def cmd_local(args: argparse.Namespace) -> int:
    import json
    import time

    from mmgitops.lab import binaries
    from mmgitops.lab.cluster import cluster

    if args.local == "mesh":
        return cmd_mesh(args)
    if args.local == "build" and args.build_what == "reference":
        return cmd_build_reference(args)
    if args.local == "build":
        started = time.monotonic()
        with err.status("Checking the binary cache...") as status:
            bins, built = binaries.ensure(lambda text: status.update(f"Building {text}"))
        for path in bins.all():
            print(path)
        what = f"built {', '.join(built)}" if built else "all cached"
        print(f"{what} in {time.monotonic() - started:.0f} s; cache {binaries.cache_size() / 2**20:.0f} MiB")
        return EXIT_OK
    if args.action == "up":
        with err.status("Starting the local cluster...") as status:
            info = cluster.up(lambda text: status.update(text), args.engine)
        print(json.dumps(info, indent=2) if args.format == "json" else
              f"local cluster up in {info['seconds']} s: API server {info['server']}\n"
              f"runtime pods backed by the {info['engine']} mesh engine\n"
              f"kubeconfig: {info['kubeconfig']}\n"
              f"S3 server {info['s3']}, storage config {info['storage_config']}\n"
              f"next: mmgitops apply overlays/conformance --kubeconfig {info['kubeconfig']} (or: make demo)")
        return EXIT_OK
    if args.action == "down":
        stopped = cluster.down()
        print("\n".join(f"stopped {s}" for s in stopped) if stopped else "no local cluster was running")
        return EXIT_OK
    info = cluster.status()
    if args.format == "json":
        print(json.dumps(info, indent=2))
    elif not info["up"]:
        print("no local cluster")
    else:
        print(f"API server {info['server']}, kubeconfig {info['kubeconfig']}, mesh engine {info['engine']}")
        for name, proc in info["processes"].items():
            print(f"  {name:<24} pid {proc['pid']:<8} {'running' if proc['running'] else 'NOT running'}")
    return EXIT_OK if not info["up"] or all(p["running"] for p in info["processes"].values()) else EXIT_FINDINGS


def cmd_build_reference(args: argparse.Namespace) -> int:
    import time

    from mmgitops.lab.reference import build

    started = time.monotonic()
    with err.status("Checking the reference build cache...") as status:
        built = build.build(args.source, lambda text: status.update(f"Building {text}"))
    for path in (built.modelmesh_home, built.rest_proxy, built.adapter):
        print(path)
    done = ", ".join(f"{part} in {built.seconds[part.split()[0]]:.0f} s" for part in built.built)
    print(f"{'built ' + done if built.built else 'all cached'}; {time.monotonic() - started:.0f} s in all "
          f"(JDK {built.java_home})")
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
        with err.status("Starting the local mesh...") as status:
            state = control.up(options, lambda text: status.update(text))
        print(json.dumps(state, indent=2) if args.format == "json" else control.describe(state))
        return EXIT_OK
    if args.action == "down":
        stopped = control.down()
        print("\n".join(f"stopped {s}" for s in stopped) if stopped else "no local mesh was running")
        return EXIT_OK
    if args.action == "kill":
        if not args.pod:
            raise ToolError("kill: name the pod, e.g. `mmgitops local mesh kill mm-0` (`status` lists them)")
        print(control.kill(args.pod))
        return EXIT_OK
    info = control.status()
    if args.format == "json":
        print(json.dumps(info, indent=2))
    elif not info["up"]:
        print("no local mesh")
    else:
        print(control.describe(info))
    running = [i.get("running", True) for i in info.get("instances", [])]
    return EXIT_OK if all(running) else EXIT_FINDINGS


def cmd_demo(args: argparse.Namespace) -> int:
    import time

    from mmgitops.cli import demo

    started = time.monotonic()
    with err.status("Preparing the local cluster...") as status:
        info = demo.prepare(repo_root(), lambda text: status.update(text), args.engine)
    prepared = time.monotonic() - started
    print(f"local cluster ready and {demo.PROFILE} applied in {prepared:.0f} s; kubeconfig {info['kubeconfig']}; "
          f"runtime pods backed by the {info.get('engine', 'embedded')} mesh engine")
    code = demo.conform(info, args.report)
    print(f"demo finished in {time.monotonic() - started:.0f} s (cluster and apply {prepared:.0f} s), "
          f"exit {code}\nreport: {(args.report / 'report.html').resolve()}\n"
          f"the local cluster is still up: `mmgitops local cluster down` stops it")
    return code


# The conform flags that are the suite's own options (mmgitops.conformance.settings), passed on as given.
CONFORM_FLAGS = ("target", "endpoint", "engine", "gpu_endpoint", "rest_port", "metrics_port", "probe_port",
                 "kill_command", "kubeconfig", "context", "storage_config", "storage_key", "resolver")


def cmd_conform(args: argparse.Namespace) -> int:
    from mmgitops.conformance import report, run

    if args.conform == "report":
        with err.status("Rendering the report..."):
            print(report.render(args.dir))
        return EXIT_OK
    if args.conform == "cleanup":
        if args.endpoint:
            # ModelMesh's management API cannot list models: a run removes its own at teardown.
            err.print("mmgitops: note: --endpoint: models on running pods cannot be listed; "
                      "only leftover local meshes are cleaned up", markup=False, highlight=False)
        from mmgitops.lab.mesh import leftovers as mesh_leftovers

        removed, kept = mesh_leftovers.cleanup()
        if args.cleanup_kubeconfig or args.cleanup_context or args.kubeconfig or args.context:
            from mmgitops.conformance.cluster import leftovers, session

            api = session.api_client(args.cleanup_kubeconfig or args.kubeconfig,
                                     args.cleanup_context or args.context)
            more_removed, more_kept = leftovers.cleanup(api)
            removed, kept = removed + more_removed, kept + more_kept
        print("\n".join([*removed, *kept]) if removed or kept else "nothing to clean up")
        return EXIT_OK
    flags = {name: getattr(args, name) for name in CONFORM_FLAGS}
    return run.run(flags, args.report, args.markexpr, getattr(args, "pytest_args", []),
                   lambda text: err.print(f"mmgitops: {text}", markup=False, highlight=False))


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
    handlers = {"validate": cmd_validate, "plan": cmd_plan, "rules": cmd_rules, "bench": cmd_bench,
                "apply": cmd_apply, "local": cmd_local, "conform": cmd_conform, "demo": cmd_demo}
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
