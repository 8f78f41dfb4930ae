"""The suite's commands: `conform` (run, report, cleanup) and `bench` (validate, mesh, conform, sync, scale)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmgitops.cli.args import PORT, seconds, whole
from mmgitops.cli.common import EXIT_FINDINGS, EXIT_OK, err, kustomize, progress, repo_root
from mmgitops.errors import ToolError
from mmgitops.gitops import render


def conform_parser(sub: argparse._SubParsersAction) -> None:
    co = sub.add_parser(
        "conform", help="run the ModelMesh conformance suite (pytest --pyargs mmgitops.conformance.checks)",
        usage="mmgitops conform [options] [-- PYTEST_ARGS...]\n       mmgitops conform report DIR\n"
        "       mmgitops conform cleanup [--kubeconfig FILE] [--context NAME] [--namespace NS] "
        "[--storage-config FILE]",
        description="Run the conformance checks against a target. With no --endpoint the suite starts a small "
        "local mesh of its own and stops it after (~30 s). Arguments after `--` go to pytest as they are.",
        epilog="Exit status: 0 certified (every applicable check passed), 1 a check failed, 2 usage or environment "
        "error, 3 incomplete (checks the run could not reach, none failed), 130 interrupted.")
    co.add_argument("--target", choices=("mesh", "cluster"),
                    help="mesh: ModelMesh pods by endpoint, or the embedded local mesh (default); cluster: a "
                    "namespace of the run's own on the kubeconfig's cluster (needs --storage-config)")
    co.add_argument("--endpoint", metavar="POD=HOST:PORT,...",
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
    ep.add_argument("--gpu-endpoint", metavar="POD=HOST:PORT",
                    help="the one pod of a single-replica GPU runtime, for the packing checks")
    for port, default, what in (("rest", 8008, "REST proxy"), ("metrics", 2112, "metrics (https or http)"),
                                ("probe", 8089, "readiness probe")):
        ep.add_argument(f"--{port}-port", type=PORT, metavar="PORT", help=f"the pods' {what} port (default {default})")
    ep.add_argument("--kill-command", default="", metavar="TEMPLATE",
                    help="a shell command that kills a pod abruptly, with {pod}, {instance}, {host} and {port} "
                    "filled in, e.g. 'oc delete pod {pod} --grace-period=0'; without it resilience is not reached")
    cl = co.add_argument_group("cluster target")
    cl.add_argument("--kubeconfig", metavar="FILE", help="default: $KUBECONFIG or ~/.kube/config")
    cl.add_argument("--context", metavar="NAME", help="kubeconfig context (default: the current one)")
    cl.add_argument("--namespace", metavar="NS",
                    help="run inside NS, which an admin made once (labelled modelmesh-enabled=true, the runner bound "
                    "by a RoleBinding): no namespace is created or deleted, and only the run's labelled objects are "
                    "removed (default: an OpenShift project of the run's own, or a labelled namespace on Kubernetes)")
    cl.add_argument("--resolver", choices=("port-forward", "annotation"),
                    help="how the suite reaches runtime pods (default: port-forward)")
    co_sub = co.add_subparsers(dest="conform", metavar="ACTION")
    rep = co_sub.add_parser("report", help="re-render DIR/report.html from DIR/results.json")
    rep.add_argument("dir", type=Path, metavar="DIR")
    clean = co_sub.add_parser("cleanup", help="remove what interrupted runs left: local meshes named conf-<hex>, "
                              "and with --kubeconfig/--context/--namespace what runs left on the cluster (their "
                              "projects or labelled namespaces, or their labelled objects in --namespace NS) and the "
                              "sample models they staged in S3")
    clean.add_argument("--kubeconfig", dest="cleanup_kubeconfig", metavar="FILE")
    clean.add_argument("--context", dest="cleanup_context", metavar="NAME")
    clean.add_argument("--namespace", dest="cleanup_namespace", metavar="NS",
                       help="the namespace runs were given: remove the objects they labelled there")
    clean.add_argument("--storage-config", dest="cleanup_storage_config", type=Path, metavar="FILE",
                       help="the storages' credentials, for a runner that may not read the runs' Secrets")


# The conform flags that are the suite's own options (mmgitops.conformance.settings), passed on as given.
CONFORM_FLAGS = ("target", "endpoint", "engine", "gpu_endpoint", "rest_port", "metrics_port", "probe_port",
                 "kill_command", "kubeconfig", "context", "storage_config", "storage_key", "resolver", "namespace")


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
        namespace = args.cleanup_namespace or args.namespace
        storage_config = args.cleanup_storage_config or args.storage_config
        if args.cleanup_kubeconfig or args.cleanup_context or args.kubeconfig or args.context or namespace:
            from mmgitops.conformance.cluster import leftovers, session

            if storage_config is not None and not storage_config.is_file():
                raise ToolError(f"--storage-config {storage_config}: no such file")
            api = session.api_client(args.cleanup_kubeconfig or args.kubeconfig,
                                     args.cleanup_context or args.context)
            more_removed, more_kept = leftovers.cleanup(api, namespace, storage_config)
            removed, kept = removed + more_removed, kept + more_kept
        print("\n".join([*removed, *kept]) if removed or kept else "nothing to clean up")
        return EXIT_OK
    flags = {name: getattr(args, name) for name in CONFORM_FLAGS}
    return run.run(flags, args.report, args.markexpr, getattr(args, "pytest_args", []),
                   lambda text: err.print(f"mmgitops: {text}", markup=False, highlight=False, soft_wrap=True))


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
    bs = bench_sub.add_parser("sync", help="the conformance profile: Argo CD's sync against `mmgitops apply`",
                              description="On a fresh local cluster of its own (named bench): the time from "
                              "applying argocd/bootstrap/conformance to every app Synced and Healthy in the real "
                              "Argo CD; then, on another fresh one, the time `mmgitops apply overlays/conformance` "
                              "takes to the last wave healthy. Printed side by side. Takes a few minutes; the "
                              "local Argo CD needs root.")
    bk = bench_sub.add_parser("scale", help="the recipe's scale: 100 InferenceServices on a 3-replica GPU runtime",
                              description="On a fresh local cluster of its own (named scale), with the real "
                              "modelmesh-serving controller: a GPU ServingRuntime of --replicas pods, each with room "
                              "for 9 one-unit models; --models InferenceServices created in one pass; each "
                              "requested once; then --seconds of requests from --clients clients, 90% to a hot "
                              "set of --hot models. Prints the times to a status and to an answer, models loaded "
                              "per pod, cold and warm latencies, evictions, failed requests and each pod's memory, "
                              "beside the recipe's claims. Takes about 2.5 minutes once built; needs root.")
    bk.add_argument("--engine", choices=("reference", "embedded"), default="reference",
                    help="what plays the runtime pods: reference pods, the real data plane (default), or the "
                    "embedded mesh")
    bk.add_argument("--models", type=whole(1, 1000), default=100, metavar="N")
    bk.add_argument("--replicas", type=whole(1, 4), default=3, metavar="N", help="runtime pods (the GPU node has 4)")
    bk.add_argument("--hot", type=whole(1), default=15, metavar="N", help="the hot set, fewer than the pods hold")
    bk.add_argument("--seconds", type=seconds, default=60.0, help="the request stream's length")
    bk.add_argument("--clients", type=whole(1, 32), default=2, help="concurrent clients in the stream")
    bk.add_argument("--churn-age-ms", type=whole(0), default=None, metavar="MS",
                    help="ModelMesh's churn guard for the runtime pods (default: ModelMesh's own, 300000 for the "
                    "repo's runtimes)")
    for each in (bv, bm, bc, bs, bk):
        each.add_argument("--format", choices=("text", "json"), default="text",
                          help="json: one JSON object with the same figures, as numbers (default text)")


def cmd_bench(args: argparse.Namespace) -> int:
    from mmgitops.gitops import bench

    if args.bench == "mesh":
        from mmgitops.lab.mesh import bench as mesh_bench

        with progress("Benchmarking the local mesh...") as status:
            text, complete = mesh_bench.run(status, args.engine, args.requests,
                                            args.seconds, args.clients, args.cold_loads, args.models, args.hot,
                                            args.rounds, args.format)
        print(text)
        # An engine that measured nothing (its mesh never started) is a failed bench, though the table printed.
        return EXIT_OK if complete else EXIT_FINDINGS
    if args.bench == "sync":
        from mmgitops.lab.argocd import bench as sync_bench

        with progress("Benchmarking Argo CD's sync...") as status:
            print(sync_bench.run(repo_root(), status, args.format))
        return EXIT_OK
    if args.bench == "scale":
        from mmgitops.cli import scale_bench
        from mmgitops.conformance.cluster.scale import Plan

        if args.hot >= args.models:
            raise ToolError(f"--hot {args.hot}: the hot set must be smaller than --models {args.models}")
        plan = Plan(models=args.models, hot=args.hot, stream_s=args.seconds, clients=args.clients)
        with progress("Benchmarking the recipe's scale...") as status:
            print(scale_bench.run(status, args.engine, args.replicas, plan, args.churn_age_ms, args.format))
        return EXIT_OK
    if args.bench == "conform":
        from mmgitops.cli import conform_bench

        with progress("Benchmarking the conformance suite...") as status:
            print(conform_bench.run(status, args.repeats, not args.no_suite, args.format))
        return EXIT_OK

    paths = args.paths or render.default_paths(repo_root())
    command = kustomize()
    with err.status("Benchmarking..."):
        print(bench.run(paths, command, args.repeat, args.crds, args.format))
    return EXIT_OK


def add_parsers(sub: argparse._SubParsersAction) -> None:
    bench_parser(sub)
    conform_parser(sub)


HANDLERS = {"conform": cmd_conform, "bench": cmd_bench}
