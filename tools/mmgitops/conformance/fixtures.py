"""The conformance suite's session: one Target for every check, and a per-run prefix on everything it creates.

`pytest tests/conformance --target mesh` starts a small local mesh for the session and stops it after (the
embedded one, or reference pods with `--engine reference`); `--endpoint POD=HOST:PORT[,...]` points the checks at
running ModelMesh pods instead, with the sample models staged in `--storage-config`.
`--target cluster` creates a namespace of the run's own on the kubeconfig's cluster, with two ServingRuntimes
made from this repo's templates (a CPU one and a one-replica GPU one), and deletes it at the end.
Locally, the packing and resilience checks start meshes of their own shape (one GPU pod; a mesh to kill a
pod of).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import tenacity

from mmgitops.conformance import clients, mesh_target, plugin
from mmgitops.conformance.cluster.resolve import RESOLVERS
from mmgitops.conformance.target import (
    GONE,
    LOADED,
    PUBLISH_MIN_PERIOD_S,
    PUBLISHED_WITHIN_S,
    UNIT_BYTES,
    Deployed,
    SampleRef,
    Target,
)
from mmgitops.errors import ToolError

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("mesh", "cluster")
# ModelMesh refuses to start a pod with room for fewer than 10 models of its default size (ModelMesh.setupMemory)
# and keeps one of them as its unload buffer: with one-unit models, 9 is the smallest pod.
DEFAULT_CAPACITY_MODELS = 9
MARKERS = {
    "readiness": "conformance: the platform, the controller, the runtime pods and every InferenceService are ready",
    "routing": "conformance: requests reach the model they name, through any pod",
    "eviction": "conformance: a full pod evicts its least recently used model",
    "coldload": "conformance: a request to an evicted model loads it within the cold-load budget",
    "packing": "conformance: a single-replica GPU runtime packs every model on its one pod",
    "resilience": "conformance: a pod killed under load loses no request a retrying client sends, and no model",
}
DEFAULT_COLD_BUDGET_MS = 500.0  # the seeds' cold-load figure for small models
DEFAULT_PACKING_MODELS = 20


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance")
    group.addoption("--target", dest="conformance_target", choices=TARGETS, default="mesh",
                    help="what the conformance checks run against (default: mesh)")
    group.addoption("--endpoint", dest="conformance_endpoint", default="",
                    help="POD=HOST:PORT[,...] of running ModelMesh pods (their gRPC port, 8033 on a pod; "
                         "the pod name gives its instance id); needs --storage-config; default: start a local mesh")
    group.addoption("--engine", dest="conformance_engine", choices=mesh_target.ENGINES, default="embedded",
                    help="without --endpoint: the local mesh the suite starts, the embedded one (default) or "
                         "reference pods built from ModelMesh's sources (mmgitops local build reference)")
    group.addoption("--rest-port", dest="conformance_rest_port", type=int, default=mesh_target.REST_PORT,
                    help="--endpoint: the pods' REST proxy port (default: %(default)s)")
    group.addoption("--metrics-port", dest="conformance_metrics_port", type=int, default=mesh_target.METRICS_PORT,
                    help="--endpoint: the pods' metrics port, https or http (default: %(default)s)")
    group.addoption("--probe-port", dest="conformance_probe_port", type=int, default=mesh_target.PROBE_PORT,
                    help="--endpoint: the pods' probe port, with /ready (default: %(default)s)")
    group.addoption("--kill-command", dest="conformance_kill_command", default="",
                    help="--endpoint: a shell command that kills a pod abruptly, with {pod}, {instance}, {host} "
                         "and {port} filled in; without it the resilience checks are skipped")
    group.addoption("--min-churn-age-ms", dest="conformance_churn_ms", type=int,
                    default=mesh_target.EMBEDDED_CHURN_MS,
                    help="the endpoints' minChurnAgeMs (the embedded mesh uses %(default)s)")
    group.addoption("--cold-budget-ms", dest="conformance_cold_budget_ms", type=float,
                    default=DEFAULT_COLD_BUDGET_MS, help="the cold-load p50 a conformant mesh stays within "
                                                         "(default: %(default)s ms)")
    group.addoption("--cold-loads", dest="conformance_cold_loads", type=int, default=10,
                    help="how many cold loads the coldload check times (default: %(default)s)")
    group.addoption("--packing-models", dest="conformance_packing_models", type=int,
                    default=DEFAULT_PACKING_MODELS,
                    help="how many InferenceServices the packing check puts on the GPU pod (default: %(default)s)")
    group.addoption("--gpu-endpoint", dest="conformance_gpu_endpoint", default="",
                    help="POD=HOST:PORT of the one pod of a single-replica GPU runtime, for the packing check "
                         "with --endpoint; default without --endpoint: start a one-instance local mesh")
    group.addoption("--kubeconfig", dest="conformance_kubeconfig", default=None,
                    help="--target cluster: the kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
    group.addoption("--context", dest="conformance_context", default=None,
                    help="--target cluster: the kubeconfig context (default: its current context)")
    group.addoption("--storage-config", dest="conformance_storage_config", default=None,
                    help="--target cluster or --endpoint: a storage-config JSON file (key -> S3 storage) the "
                         "runtime pods can pull from; the suite stages its sample models there")
    group.addoption("--storage-key", dest="conformance_storage_key", default=None,
                    help="which storage of --storage-config to use (default: the only one)")
    group.addoption("--resolver", dest="conformance_resolver", choices=RESOLVERS, default="port-forward",
                    help="--target cluster: how runtime pods are reached (default: %(default)s; `annotation` is "
                         "for the local cluster's stand-in controller)")
    group.addoption("--capacity-models", dest="conformance_capacity_models", type=int,
                    default=DEFAULT_CAPACITY_MODELS,
                    help="--target cluster: the CPU runtime's model cache, in small models per pod "
                         "(default: %(default)s)")


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Resilience kills a pod: against given endpoints that pod is one every other check uses, so it goes last.
    items.sort(key=lambda item: item.get_closest_marker("resilience") is not None)


def _option(config: pytest.Config, name: str, default: object) -> object:
    # Run as `pytest` from the root, this conftest may load after the command line is parsed.
    return config.getoption(name, default=default)


@pytest.fixture(scope="session")
def run_id() -> str:
    return secrets.token_hex(3)


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           run_id: str) -> Iterator[Target]:
    if cluster_mode(request.config):
        yield from cluster_runtime(request, "cpu", replicas=2,
                                   capacity_models=int(str(option(request.config, "conformance_capacity_models",
                                                                  DEFAULT_CAPACITY_MODELS))))
        return
    endpoint = str(_option(request.config, "conformance_endpoint", "") or "")
    if endpoint:
        with given_endpoints(request, endpoint) as chosen:
            yield chosen
        return
    with local_mesh(request.config, tmp_path_factory.mktemp("conformance-mesh"), f"conf-{run_id}") as embedded:
        request.config.stash[plugin.TARGET_INFO].update(getattr(embedded, "about", {}))
        yield embedded


def local_mesh(config: pytest.Config, state_root: Path, name: str,
               flags: Sequence[str] = mesh_target.EMBEDDED_FLAGS) -> AbstractContextManager[Target]:
    """A local mesh of the engine the run asked for, stopped at the end."""
    return mesh_target.local_mesh(state_root, name, flags,
                                  engine=str(_option(config, "conformance_engine", "embedded")))


@pytest.fixture(scope="session")
def given_samples(request: pytest.FixtureRequest, run_id: str) -> Iterator[list[SampleRef]]:
    """--endpoint: the sample models, staged in --storage-config's storage under the run's prefix and removed at
    the end (also after a failure)."""
    from mmgitops.conformance import staging

    config = request.config
    storage_config = option(config, "conformance_storage_config", None)
    if not storage_config:
        pytest.exit("--endpoint needs --storage-config FILE: an S3 storage the pods can pull from", returncode=2)
    try:
        key, entry = staging.choose(Path(str(storage_config)), option(config, "conformance_storage_key", None))
        staged = staging.stage(entry, key, run_id, progress(config))
    except ToolError as error:
        pytest.exit(str(error), returncode=2)
    try:
        yield staged
    finally:
        staging.remove(entry, run_id)


@contextmanager
def given_endpoints(request: pytest.FixtureRequest, endpoints: str) -> Iterator[Target]:
    """A target of running pods named POD=HOST:PORT[,...], with the churn age the user gave for them."""
    config = request.config
    try:
        pods = mesh_target.given_pods(endpoints, *(int(str(option(config, f"conformance_{port}_port", default)))
                                                   for port, default in (("rest", mesh_target.REST_PORT),
                                                                         ("metrics", mesh_target.METRICS_PORT),
                                                                         ("probe", mesh_target.PROBE_PORT))))
    except ToolError as error:
        pytest.exit(str(error), returncode=2)
    unreachable = mesh_target.unreachable(pods)
    if unreachable:
        pytest.exit(f"--endpoint: nothing answers at {', '.join(unreachable)}", returncode=2)
    churn_ms = int(str(_option(config, "conformance_churn_ms", mesh_target.EMBEDDED_CHURN_MS)))
    chosen = mesh_target.MeshTarget(pods, request.getfixturevalue("given_samples"), churn_ms,
                                    str(option(config, "conformance_kill_command", "") or ""))
    try:
        yield chosen
    finally:
        chosen.close()


def option(config: pytest.Config, name: str, default: object) -> object:
    return _option(config, name, default)


def endpoint_mode(config: pytest.Config) -> bool:
    return bool(str(_option(config, "conformance_endpoint", "") or ""))


def cluster_mode(config: pytest.Config) -> bool:
    return _option(config, "conformance_target", "mesh") == "cluster"


def external(config: pytest.Config) -> bool:
    """The checks share pods the suite did not start for them: a pod killed is one every other check uses."""
    return endpoint_mode(config) or cluster_mode(config)


def progress(config: pytest.Config) -> Any:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return (lambda text: reporter.write_line(f"conformance: {text}")) if reporter else (lambda _: None)


@pytest.fixture(scope="session")
def cluster_session(request: pytest.FixtureRequest, run_id: str) -> Iterator[Any]:
    """The run's namespace, storage Secret and staged samples; all removed at the end, also after a failure."""
    from mmgitops.conformance.cluster import session
    from mmgitops.lab.mesh import storage

    config = request.config
    opened = None
    try:
        storage_config = option(config, "conformance_storage_config", None)
        if not storage_config:
            raise ToolError("--target cluster needs --storage-config FILE: an S3 storage the runtime pods can "
                            "pull from")
        entries = storage.load_config(Path(str(storage_config)))
        key = option(config, "conformance_storage_key", None)
        if not key and len(entries) != 1:
            raise ToolError(f"{storage_config}: {len(entries)} storages; choose one with --storage-key")
        api = session.api_client(option(config, "conformance_kubeconfig", None),  # type: ignore[arg-type]
                                 option(config, "conformance_context", None))  # type: ignore[arg-type]
        opened = session.Session(api, run_id, Path(str(storage_config)), str(key or next(iter(entries))),
                                 progress(config))
        opened.open()
    except BaseException as error:  # Ctrl-C included: what open() made so far is removed
        if opened is not None:
            opened.close()
        if isinstance(error, ToolError):
            pytest.exit(str(error), returncode=2)
        raise
    try:
        yield opened
    finally:
        failures = opened.close()
        if failures:
            pytest.fail("teardown left cluster objects behind: " + "; ".join(failures))


def cluster_runtime(request: pytest.FixtureRequest, kind: str, replicas: int, capacity_models: int
                    ) -> Iterator[Target]:
    """A ServingRuntime of the run, made from this repo's `kind` template (the GPU one is the CPU runtime with
    one nvidia.com/gpu per pod, placed as the repo's GPU runtime is placed)."""
    from mmgitops.conformance.cluster import objects
    from mmgitops.conformance.cluster import target as cluster_target

    made = request.getfixturevalue("cluster_session")
    config = request.config
    try:
        template = objects.read_template(ROOT, "cpu")
        placement = objects.read_template(ROOT, "gpu")["spec"] if kind == "gpu" else None
        runtime = objects.serving_runtime(template, f"conf-{kind}", made.run_id, replicas, capacity_models,
                                          gpu=kind == "gpu", gpu_placement=placement)
        chosen = cluster_target.open_target(
            made, runtime, int(str(option(config, "conformance_churn_ms", mesh_target.EMBEDDED_CHURN_MS))),
            str(option(config, "conformance_resolver", "port-forward")))
        config.stash[plugin.TARGET_INFO].update(server=str(made.api.configuration.host), **chosen.backing())
    except ToolError as error:
        pytest.fail(str(error))
    try:
        yield chosen
    finally:
        chosen.close()


@pytest.fixture(scope="session")
def gpu_target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               run_id: str) -> Iterator[Target]:
    """The one pod of a single-replica GPU runtime. Locally: a one-instance mesh with room for every packed
    model and a few more, so that packing, not eviction, is what the check sees."""
    gpu_endpoint = str(_option(request.config, "conformance_gpu_endpoint", "") or "")
    models = int(str(_option(request.config, "conformance_packing_models", DEFAULT_PACKING_MODELS)))
    if gpu_endpoint:
        with given_endpoints(request, gpu_endpoint) as chosen:
            yield chosen
        return
    if cluster_mode(request.config):
        yield from cluster_runtime(request, "gpu", replicas=1, capacity_models=models + 4)
        return
    if endpoint_mode(request.config):
        pytest.skip("no single-replica GPU runtime: --endpoint names the pods of one runtime; pass --gpu-endpoint "
                    "HOST:PORT of the GPU runtime's pod to run the packing check")
    flags = ("--instances", "1", "--capacity", str((models + 4) * UNIT_BYTES), "--samples", "6", "--no-register")
    with local_mesh(request.config, tmp_path_factory.mktemp("gpu-mesh"), f"gpu-{run_id}", flags) as embedded:
        yield embedded


class Deployments:
    """What the suite created on the target, each name carrying the run's prefix, for teardown."""

    def __init__(self, target: Target, prefix: str) -> None:
        self.target = target
        self.prefix = prefix
        self.names: list[str] = []

    def deploy(self, name: str, sample: SampleRef, load: bool = True) -> Deployed:
        full = f"{self.prefix}-{name}"
        self.names.append(full)
        return self.target.deploy(full, sample, load)

    def remove_all(self) -> list[str]:
        """Undeploy everything, carrying on past failures; returns the failures."""
        failures = []
        while self.names:
            name = self.names.pop()
            try:
                self.target.undeploy(name)
                wait_for_state(self.target, name, GONE, timeout_s=30)
            except Exception as error:  # teardown reports every leftover, not the first
                failures.append(f"{name}: {error}")
        return failures


@contextmanager
def tracked(target: Target, run_id: str, where: str = "") -> Iterator[Deployments]:
    """Deployments on the target under the run's prefix, all removed at the end; leftovers fail the teardown."""
    made = Deployments(target, f"conf-{run_id}")
    yield made
    failures = made.remove_all()
    if failures:
        pytest.fail(f"teardown left models behind{where}: " + "; ".join(failures))


@pytest.fixture(scope="session")
def session_deployments(target: Target, run_id: str) -> Iterator[Deployments]:
    with tracked(target, run_id) as made:
        yield made


@pytest.fixture(scope="module")
def deployments(session_deployments: Deployments) -> Iterator[Deployments]:
    # Each module starts from an empty target: one group's models must not take the room another counts on.
    yield session_deployments
    session_deployments.remove_all()


def wait_for_state(target: Target, name: str, wanted: str, timeout_s: float = 60) -> None:
    """Poll the model's activeModelState (not Ready, which stays True while Standby) until it is `wanted`."""
    try:
        tenacity.Retrying(stop=tenacity.stop_after_delay(timeout_s), wait=tenacity.wait_fixed(0.2),
                          retry=tenacity.retry_if_result(lambda state: state != wanted), reraise=False,
                          )(target.model_state, name)
    except tenacity.RetryError as error:
        seen = error.last_attempt.result() if not error.last_attempt.failed else error.last_attempt.exception()
        # An AssertionError, not pytest.fail: teardown catches it and carries on with the other models.
        raise AssertionError(f"model {name} is {seen!r}, not {wanted!r}, after {timeout_s:.0f} s") from None


def distinct_samples(target: Target, count: int) -> list[SampleRef]:
    """`count` samples with different answers, so a response shows which model served it."""
    by_answer: dict[int, SampleRef] = {}
    for sample in target.samples():
        by_answer.setdefault(sample.answer, sample)
    if len(by_answer) < count:
        pytest.fail(f"the target offers {len(by_answer)} distinguishable sample models; the check needs {count}")
    return list(by_answer.values())[:count]


def deploy_paced(deployments: Deployments, named: list[tuple[str, SampleRef]]) -> list[Deployed]:
    """Deploy one model at a time, each Loaded before the next, and each load starting at least
    PUBLISH_MIN_PERIOD_S after the one before. A load queued on a pod publishes the pod's instance record unless
    the pod published less than that ago (ModelMesh.publishInstanceRecord), and other pods place new copies by
    those records (CacheMissForwardingLB.getNext): paced, every placement sees where the models already are, and
    no load lands on a pod that is full while another has room. Unpaced, a fill can overflow one pod and evict
    models that were loaded but never used, which ModelMesh ranks as used an hour ago (LASTUSED_AGE_ON_ADD_MS)."""
    made = []
    for name, sample in named:
        started = time.monotonic()
        made.append(deployments.deploy(name, sample))
        wait_for_state(deployments.target, made[-1].name, LOADED)
        time.sleep(max(0.0, started + PUBLISH_MIN_PERIOD_S + 0.2 - time.monotonic()))
    return made


def fill_every_pod(deployments: Deployments, room: dict[str, int], prefix: str) -> dict[str, list[Deployed]]:
    """Deploy models, paced, until every pod holds as many as it has room for; each pod's models in the order
    they were deployed. Paced placement still picks at random among the pods it judges in range
    (CacheMissForwardingLB.getNext), and can pick a pod that is full, whose load then evicts one of the fill's
    own never-used models: so the fill goes on until every pod is full, and models left without a copy are
    not part of it."""
    target, samples = deployments.target, deployments.target.samples()
    made: list[Deployed] = []
    limit = 3 * sum(room.values())
    while True:
        where = {m.name: target.copy_locations(m.name) for m in made}
        per_pod = {pod: [m for m in made if where[m.name] == [pod]] for pod in room}
        missing = sum(max(0, room[pod] - len(models)) for pod, models in per_pod.items())
        if not missing:
            return per_pod
        if len(made) + missing > limit:
            pytest.fail(f"{len(made)} models deployed and the pods hold {({p: len(m) for p, m in per_pod.items()})} "
                        f"of the {room} they have room for")
        made += deploy_paced(deployments, [(f"{prefix}-{len(made) + i:02d}", samples[(len(made) + i) % len(samples)])
                                           for i in range(missing)])


def pod_value(target: Target, pod: str, name: str) -> float:
    value = clients.metric_value(target.metrics(pod), name)
    assert value is not None, f"pod {pod} does not report {name}"
    return value


def summed(target: Target, name: str) -> float:
    """A metric summed over the target's pods; pods that do not report it count 0."""
    return sum(clients.metric_value(target.metrics(pod), name) or 0.0 for pod in target.pods())


def room_per_pod(target: Target) -> dict[str, int]:
    room = {pod: target.capacity_models(pod) for pod in target.pods()}
    missing = [pod for pod, k in room.items() if not k]
    if missing:
        pytest.fail(f"pods {', '.join(missing)} report no modelmesh_instance_capacity_bytes")
    return {pod: int(k or 0) for pod, k in room.items()}


def wait_for_gauges(target: Target, pods: list[str], name: str, wanted: Callable[[float], bool], what: str,
                    timeout_s: float = PUBLISHED_WITHIN_S) -> dict[str, float]:
    """Poll a per-pod gauge until every pod's value is `wanted`. ModelMesh's modelmesh_instance_* gauges show
    the pod's last published instance record, republished by a periodic task (INSTANCE_REC_PUBLISH_FREQ_MS) when
    the change is large enough: a pod emptied or filled shows within PUBLISHED_WITHIN_S, not at once."""
    def values() -> dict[str, float]:
        return {pod: pod_value(target, pod, name) for pod in pods}
    try:
        return tenacity.Retrying(stop=tenacity.stop_after_delay(timeout_s), wait=tenacity.wait_fixed(0.5),
                                 retry=tenacity.retry_if_result(lambda v: not all(map(wanted, v.values()))))(values)
    except tenacity.RetryError as error:
        pytest.fail(f"{name} after {timeout_s:.0f} s: {error.last_attempt.result()}; expected {what}")


def wait_until_empty(target: Target, room: dict[str, int]) -> None:
    """A fill counts on empty pods: models another group undeployed are unloaded asynchronously, and the pods
    publish the change on ModelMesh's clock (see wait_for_gauges)."""
    wait_for_gauges(target, list(room), "modelmesh_instance_used_bytes", lambda used: used == 0,
                    "0 on every pod: pods still hold models this check did not deploy")
