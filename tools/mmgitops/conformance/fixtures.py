"""The suite's fixtures: one Target for every check, and a per-run prefix on everything it creates.

Without --endpoint and --target cluster, the suite starts a small local mesh for the session (the embedded one, or
reference pods with `--engine reference`) through `mmgitops local mesh up` and stops it after. `--endpoint
POD=HOST:PORT[,...]` points the checks at running ModelMesh pods instead, with the sample models staged in
`--storage-config`. `--target cluster` works in the namespace `--namespace` names, or one it makes (an OpenShift
project, or a labelled namespace), with two ServingRuntimes made from this repo's templates (a CPU one and a
one-replica GPU one), and removes what it made at the end.
Locally, the packing and resilience checks start meshes of their own shape (one GPU pod; a mesh to kill a pod of).

Registered by the plugin; clients, gRPC and the Kubernetes client load inside the fixtures that need them.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from mmgitops.conformance import overfull, plugin
from mmgitops.conformance.settings import SETTINGS, Settings
from mmgitops.conformance.steps import Deployments, tracked
from mmgitops.conformance.target import UNIT_BYTES, SampleRef, Target
from mmgitops.conformance.verdict import not_reached
from mmgitops.errors import Forbidden, ToolError

# pytest.exit's code for a run that cannot start (a bad file, an unreachable target): `mmgitops conform` exits 2.
CANNOT_RUN = pytest.ExitCode.USAGE_ERROR


@pytest.fixture(scope="session")
def conformance_settings(request: pytest.FixtureRequest) -> Settings:
    return request.config.stash[SETTINGS]


@pytest.fixture(scope="session")
def run_id() -> str:
    return secrets.token_hex(3)


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest, conformance_settings: Settings, tmp_path_factory: pytest.TempPathFactory,
           run_id: str) -> Iterator[Target]:
    if conformance_settings.cluster:
        yield from cluster_runtime(request, "cpu", replicas=2, capacity_models=conformance_settings.capacity_models)
        return
    if conformance_settings.given_pods:
        with given_endpoints(request, conformance_settings.endpoint) as chosen:
            yield chosen
        return
    with local_mesh(request.config, tmp_path_factory.mktemp("conformance-mesh"), f"conf-{run_id}") as embedded:
        request.config.stash[plugin.TARGET_INFO].update(getattr(embedded, "about", {}))
        yield embedded


def local_mesh(config: pytest.Config, state_root: Path, name: str,
               flags: Sequence[str] | None = None) -> AbstractContextManager[Target]:
    """A local mesh of the engine the run asked for, stopped at the end."""
    from mmgitops.conformance import mesh_target

    return mesh_target.local_mesh(state_root, name, mesh_target.EMBEDDED_FLAGS if flags is None else flags,
                                  engine=config.stash[SETTINGS].engine)


def own_mesh(request: pytest.FixtureRequest, kind: str, flags: Sequence[str]) -> Iterator[Target]:
    """A local mesh of a check's own shape, named `<kind>-<run id>` (as `mmgitops conform cleanup` looks for it)
    and stopped when the fixture ends."""
    run_id = request.getfixturevalue("run_id")
    state_root = request.getfixturevalue("tmp_path_factory").mktemp(f"{kind}-mesh")
    with local_mesh(request.config, state_root, f"{kind}-{run_id}", flags) as embedded:
        yield embedded


@pytest.fixture(scope="session")
def given_samples(conformance_settings: Settings, request: pytest.FixtureRequest,
                  run_id: str) -> Iterator[list[SampleRef]]:
    """--endpoint: the sample models, staged in --storage-config's storage under the run's prefix and removed at
    the end (also after a failure)."""
    from mmgitops.conformance import staging

    assert conformance_settings.storage_config is not None  # Settings requires it with --endpoint
    try:
        key, entry = staging.choose(conformance_settings.storage_config, conformance_settings.storage_key)
        staged = staging.stage(entry, key, run_id, progress(request.config))
    except ToolError as error:
        pytest.exit(str(error), returncode=CANNOT_RUN)
    try:
        yield staged
    finally:
        staging.remove(entry, run_id)


@contextmanager
def given_endpoints(request: pytest.FixtureRequest, endpoints: str) -> Iterator[Target]:
    """A target of running pods named POD=HOST:PORT[,...], with the churn age the user gave for them."""
    from mmgitops.conformance import mesh_target

    chosen_settings: Settings = request.config.stash[SETTINGS]
    pods = mesh_target.given_pods(endpoints, chosen_settings.rest_port, chosen_settings.metrics_port,
                                  chosen_settings.probe_port)
    unreachable = mesh_target.unreachable(pods)
    if unreachable:
        pytest.exit(f"--endpoint: nothing answers at {', '.join(unreachable)}", returncode=CANNOT_RUN)
    chosen = mesh_target.MeshTarget(pods, request.getfixturevalue("given_samples"), chosen_settings.min_churn_age_ms,
                                    chosen_settings.kill_command)
    try:
        yield chosen
    finally:
        chosen.close()


def progress(config: pytest.Config) -> Any:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return (lambda text: reporter.write_line(f"conformance: {text}")) if reporter else (lambda _: None)


@pytest.fixture(scope="session")
def cluster_session(conformance_settings: Settings, request: pytest.FixtureRequest, run_id: str) -> Iterator[Any]:
    """The run's namespace, storage Secret and staged samples; all removed at the end, also after a failure."""
    from mmgitops.conformance.cluster import session
    from mmgitops.modelmesh import storage

    chosen = conformance_settings
    assert chosen.storage_config is not None  # Settings requires it with --target cluster
    opened = None
    try:
        entries = storage.load_config(chosen.storage_config)
        if not chosen.storage_key and len(entries) != 1:
            raise ToolError(f"{chosen.storage_config}: {len(entries)} storages; choose one with --storage-key")
        api = session.api_client(chosen.kubeconfig, chosen.context)
        opened = session.Session(api, run_id, chosen.storage_config, chosen.storage_key or next(iter(entries)),
                                 progress(request.config), chosen.namespace)
        opened.open()
    except BaseException as error:  # Ctrl-C included: what open() made so far is removed
        if opened is not None:
            opened.close()
        if isinstance(error, ToolError):
            pytest.exit(str(error), returncode=CANNOT_RUN)
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
    chosen_settings: Settings = request.config.stash[SETTINGS]
    try:
        template = objects.read_template("cpu")
        placement = objects.read_template("gpu")["spec"] if kind == "gpu" else None
        runtime = objects.serving_runtime(template, f"conf-{kind}", made.namespace, made.run_id, replicas,
                                          capacity_models, gpu=kind == "gpu", gpu_placement=placement)
        chosen = cluster_target.open_target(made, runtime, chosen_settings.min_churn_age_ms, chosen_settings.resolver)
        request.config.stash[plugin.TARGET_INFO].update(server=str(made.api.configuration.host),
                                                        namespace=f"{made.namespace} ({made.place.kind})",
                                                        **chosen.backing())
    except Forbidden as error:
        pytest.exit(str(error), returncode=CANNOT_RUN)
    except ToolError as error:
        pytest.fail(str(error))
    try:
        yield chosen
    finally:
        chosen.close()


def gpu_room(models: int) -> int:
    """One-unit models the GPU pod's cache holds: the packed ones and a few more, and never less than ModelMesh starts
    with, room for 10 default-size models (ModelMesh.setupMemory; the suite's default model size is one unit)."""
    return max(models + 4, 10)


@pytest.fixture(scope="session")
def gpu_target(request: pytest.FixtureRequest, conformance_settings: Settings) -> Iterator[Target]:
    """The one pod of a single-replica GPU runtime. Locally: a one-instance mesh with room for every packed
    model and a few more, so that packing, not eviction, is what the check sees."""
    models = conformance_settings.packing_models
    if conformance_settings.gpu_endpoint:
        with given_endpoints(request, conformance_settings.gpu_endpoint) as chosen:
            yield chosen
        return
    if conformance_settings.cluster:
        yield from cluster_runtime(request, "gpu", replicas=1, capacity_models=gpu_room(models))
        return
    if conformance_settings.given_pods:
        not_reached("no single-replica GPU runtime: --endpoint names the pods of one runtime; pass --gpu-endpoint "
                    "HOST:PORT of the GPU runtime's pod to run the packing check")
    yield from own_mesh(request, "gpu", ("--instances", "1", "--capacity", str(gpu_room(models) * UNIT_BYTES),
                                         "--samples", "6", "--no-register"))


@pytest.fixture(scope="session")
def session_deployments(target: Target, run_id: str) -> Iterator[Deployments]:
    yield from tracked(target, run_id)


@pytest.fixture(scope="module")
def deployments(session_deployments: Deployments) -> Iterator[Deployments]:
    # Each module starts from an empty target: one group's models must not take the room another counts on.
    yield session_deployments
    session_deployments.remove_all()


@pytest.fixture(scope="session")
def lru_deployments(target: Target, run_id: str) -> Iterator[Deployments]:
    yield from tracked(target, run_id, " by the eviction and coldload groups")


@pytest.fixture(scope="session")
def overfilled(target: Target, lru_deployments: Deployments) -> overfull.Overfull:
    """The pods filled once for the session (overfull.py)."""
    return overfull.overfill(target, lru_deployments)


@pytest.fixture(scope="module")
def overfull_pods(lru_deployments: Deployments, request: pytest.FixtureRequest) -> Iterator[overfull.Overfull]:
    """The overfull pods for a module's checks. Their models go after the last module that uses them, or at once
    when the fill failed, so that every group after starts from empty pods, as with the `deployments` fixture."""
    try:
        scenario: overfull.Overfull = request.getfixturevalue("overfilled")
    except BaseException:
        lru_deployments.remove_all()  # the fill's own failure is the one to report
        raise
    yield scenario
    items = request.session.items
    last = max(i for i, item in enumerate(items) if item.module is request.module)
    if not any("overfull_pods" in item.fixturenames for item in items[last + 1:]):
        failures = lru_deployments.remove_all()
        if failures:
            pytest.fail("teardown left models behind: " + "; ".join(failures))
