"""The suite's options, parsed and checked once into a frozen `Settings` (`pytest.UsageError` for a bad value or a
bad combination), so that no check reads a raw option.

Loaded by every pytest run in an environment that installs mmgitops (a pytest11 plugin): stdlib and pytest only.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from mmgitops.modelmesh import defaults

TARGETS = ("mesh", "cluster")
ENGINES = ("embedded", "reference")
RESOLVERS = ("port-forward", "annotation")
# ModelMesh refuses to start a pod with room for fewer than 10 models of its default size (ModelMesh.setupMemory)
# and keeps one of them as its unload buffer: with one-unit models, 9 is the smallest pod.
DEFAULT_CAPACITY_MODELS = 9
DEFAULT_COLD_BUDGET_MS = 500.0  # the seeds' cold-load figure for small models
MAX_COLD_BUDGET_MS = 3_600_000.0
MIN_COLD_LOADS = 10  # a p50 and a p95 need at least this many
DEFAULT_PACKING_MODELS = 20
# The embedded mesh the suite starts churns after 1.5 s, so that the eviction checks need not wait out ModelMesh's
# default (defaults.MIN_CHURN_AGE_MS).
EMBEDDED_CHURN_MS = 1500

# Flags that only make sense with another one, by the option's dest.
ENDPOINT_ONLY = ("gpu_endpoint", "rest_port", "metrics_port", "probe_port", "kill_command")
CLUSTER_ONLY = ("kubeconfig", "context", "resolver", "capacity_models", "namespace")
STORAGE = ("storage_config", "storage_key")


@dataclass(frozen=True)
class Settings:
    target: str = "mesh"
    endpoint: str = ""
    engine: str = "embedded"
    gpu_endpoint: str = ""
    rest_port: int = defaults.REST_PORT
    metrics_port: int = defaults.METRICS_PORT
    probe_port: int = defaults.PROBE_PORT
    kill_command: str = ""
    min_churn_age_ms: int = EMBEDDED_CHURN_MS
    cold_budget_ms: float = DEFAULT_COLD_BUDGET_MS
    cold_loads: int = MIN_COLD_LOADS
    packing_models: int = DEFAULT_PACKING_MODELS
    kubeconfig: str | None = None
    context: str | None = None
    storage_config: Path | None = None
    storage_key: str | None = None
    resolver: str = "port-forward"
    capacity_models: int = DEFAULT_CAPACITY_MODELS
    namespace: str | None = None

    @property
    def cluster(self) -> bool:
        return self.target == "cluster"

    @property
    def given_pods(self) -> bool:
        """The pods were started by someone else and named with --endpoint."""
        return bool(self.endpoint)

    @property
    def external(self) -> bool:
        """The checks share pods the suite did not start for them: a pod killed is one every other check uses."""
        return self.cluster or self.given_pods


SETTINGS = pytest.StashKey[Settings]()


def flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance")

    def add(dest: str, **kwargs: object) -> None:
        # Defaults stay None here, so that a flag given is told from a flag left out; Settings holds the defaults.
        group.addoption(flag(dest), dest=f"conformance_{dest}", default=None, **kwargs)  # type: ignore[arg-type]

    add("target", choices=TARGETS, help="what the conformance checks run against (default: mesh)")
    add("endpoint", metavar="POD=HOST:PORT[,...]",
        help="running ModelMesh pods by their gRPC port (8033 on a pod; the pod name gives its instance id); needs "
             "--storage-config; default: start a local mesh")
    add("engine", choices=ENGINES, help="without --endpoint: the local mesh the suite starts, the embedded one "
                                        "(default) or reference pods (mmgitops local build reference)")
    add("rest_port", type=int, help=f"--endpoint: the pods' REST proxy port (default: {defaults.REST_PORT})")
    add("metrics_port", type=int,
        help=f"--endpoint: the pods' metrics port, https or http (default: {defaults.METRICS_PORT})")
    add("probe_port", type=int, help=f"--endpoint: the pods' probe port, with /ready (default: {defaults.PROBE_PORT})")
    add("kill_command", help="--endpoint: a shell command that kills a pod abruptly, with {pod}, {instance}, {host} "
                             "and {port} filled in; without it the resilience checks are skipped")
    add("min_churn_age_ms", type=int,
        help=f"the pods' minChurnAgeMs (the embedded mesh uses {EMBEDDED_CHURN_MS})")
    add("cold_budget_ms", type=float,
        help=f"the cold-load p50 a conformant mesh stays within (default: {DEFAULT_COLD_BUDGET_MS} ms)")
    add("cold_loads", type=int, help=f"how many cold loads the coldload check times (default: {MIN_COLD_LOADS})")
    add("packing_models", type=int,
        help=f"how many InferenceServices the packing check puts on the GPU pod (default: {DEFAULT_PACKING_MODELS})")
    add("gpu_endpoint", metavar="POD=HOST:PORT",
        help="the one pod of a single-replica GPU runtime, for the packing check with --endpoint; default without "
             "--endpoint: start a one-instance local mesh")
    add("kubeconfig", help="--target cluster: the kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
    add("context", help="--target cluster: the kubeconfig context (default: its current context)")
    add("storage_config", metavar="FILE",
        help="--target cluster or --endpoint: a storage-config JSON file (key -> S3 storage) the runtime pods can "
             "pull from; the suite stages its sample models there")
    add("storage_key", help="which storage of --storage-config to use (default: the only one)")
    add("resolver", choices=RESOLVERS, help="--target cluster: how runtime pods are reached (default: port-forward; "
                                            "`annotation` is for the local cluster's stand-in controller)")
    add("namespace", metavar="NS",
        help="--target cluster: run in this namespace, which an admin made and labelled modelmesh-enabled=true; the "
             "run creates and deletes no namespace and removes only the objects it labelled (default: an OpenShift "
             "project of the run's own where the API offers ProjectRequests, else a labelled namespace)")
    add("capacity_models", type=int, help="--target cluster: the CPU runtime's model cache, in small models per pod "
                                          f"(default: {DEFAULT_CAPACITY_MODELS})")


def from_config(config: pytest.Config) -> Settings:
    names = Settings.__dataclass_fields__
    return from_values({name: config.getoption(f"conformance_{name}", default=None) for name in names})


def _refuse(given: dict[str, object], names: tuple[str, ...], who: str) -> None:
    flags = [flag(name) for name in names if name in given]
    if flags:
        raise pytest.UsageError(f"{', '.join(flags)}: for {who} only")


def _at_least(given: dict[str, object], name: str, least: float, why: str = "", most: float = math.inf,
              most_why: str = "") -> None:
    value = given.get(name)
    if value is None:
        return
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{flag(name)} {value}: not a number") from None
    if not math.isfinite(number):
        raise pytest.UsageError(f"{flag(name)} {value}: not a finite number")
    if number < least:
        raise pytest.UsageError(f"{flag(name)} {value}: must be at least {least:g}{why}")
    if number > most:
        raise pytest.UsageError(f"{flag(name)} {value}: must be at most {most:g}{most_why}")


def from_values(values: dict[str, object]) -> Settings:
    """Settings from option values by dest name; None means not given, and so does "" but for the endpoints, where
    an empty value is a mistake (a shell variable that was not set), not a request for the local mesh."""
    for name in ("endpoint", "gpu_endpoint"):
        if values.get(name) == "":
            raise pytest.UsageError(f"{flag(name)}: empty; give POD=HOST:PORT[,...], or leave the option out")
    given = {name: value for name, value in values.items() if value not in (None, "")}
    target = str(given.get("target", "mesh"))
    if target == "cluster":
        if "endpoint" in given:
            raise pytest.UsageError("--endpoint: only --target mesh takes endpoints; a cluster's pods are found by "
                                    "the API")
        _refuse(given, ("engine",), "--target mesh without --endpoint")
        _refuse(given, ENDPOINT_ONLY, "--endpoint")
        if "storage_config" not in given:
            raise pytest.UsageError("--target cluster needs --storage-config FILE: an S3 storage the pods can pull "
                                    "from")
    elif "endpoint" in given:
        _refuse(given, CLUSTER_ONLY, "--target cluster")
        _refuse(given, ("engine",), "--target mesh without --endpoint: the suite starts no local mesh when "
                                    "--endpoint names the pods, so")
        for name in ("endpoint", "gpu_endpoint"):
            if name in given:
                parse_endpoints(str(given[name]), flag(name))
        if "storage_config" not in given:
            raise pytest.UsageError("--endpoint needs --storage-config FILE: an S3 storage the pods can pull from")
    else:
        _refuse(given, CLUSTER_ONLY, "--target cluster")
        _refuse(given, STORAGE, "--target cluster and --endpoint")
        _refuse(given, ENDPOINT_ONLY, "--endpoint")
    _at_least(given, "cold_loads", MIN_COLD_LOADS, ": a p50 and a p95 need that many cold loads")
    _at_least(given, "cold_budget_ms", 1, most=MAX_COLD_BUDGET_MS, most_why=": an hour is no budget")
    _at_least(given, "packing_models", 2, ": packing is about many models on one pod")
    _at_least(given, "capacity_models", 1)
    _at_least(given, "min_churn_age_ms", 0)
    for port in ("rest_port", "metrics_port", "probe_port"):
        _at_least(given, port, 1)
    if "storage_config" in given:
        path = _resolved("--storage-config", given["storage_config"])
        if not path.is_file():
            raise pytest.UsageError(f"--storage-config {given['storage_config']}: no such file")
        given["storage_config"] = path
    if "namespace" in given and not _NAMESPACE.fullmatch(str(given["namespace"])):
        raise pytest.UsageError(f"--namespace {given['namespace']}: not a namespace name (lower-case letters, digits "
                                "and '-', at most 63)")
    if "kubeconfig" in given:
        given["kubeconfig"] = str(_resolved("--kubeconfig", given["kubeconfig"]))
    return Settings(**given)  # type: ignore[arg-type]


def _resolved(option: str, value: object) -> Path:
    try:
        return Path(str(value)).expanduser().resolve()
    except (RuntimeError, OSError):  # pathlib raises RuntimeError for a symlink loop
        raise pytest.UsageError(f"{option} {value}: a symlink loop, or a path that cannot be resolved") from None


_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# A pod name as Kubernetes allows it, and a HOST:PORT with an IPv6 host in brackets.
_POD = re.compile(r"[\w.\-]+")
_ADDRESS = re.compile(r"[\w.\-\[\]:]+:\d+")


def parse_endpoints(text: str, option: str = "--endpoint") -> list[tuple[str, str]]:
    """`POD=HOST:PORT[,...]` as (pod name, HOST:PORT). Each pod is named: ModelMesh reports where a copy is by
    instance id, the last characters of the pod's name, and the checks compare that with the pods."""
    given = []
    for part in (p.strip() for p in text.split(",")):
        name, _, address = part.rpartition("=")
        if not _POD.fullmatch(name) or not _ADDRESS.fullmatch(address):
            raise pytest.UsageError(
                f"{option} {text}: expected POD=HOST:PORT[,POD=HOST:PORT...], each pod named: ModelMesh reports a "
                f"copy's location by the last {defaults.INSTANCE_ID_LENGTH} characters of its pod's name")
        given.append((name, address))
    return given
