"""The conformance suite's session: one Target for every check, and a per-run prefix on everything it creates.

`pytest tests/conformance --target mesh` starts a small local mesh for the session and stops it after;
`--endpoint HOST:PORT[,HOST:PORT...]` points the checks at running ModelMesh pods instead.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import tenacity
from mmgitops.conformance import mesh_target
from mmgitops.conformance.target import GONE, Deployed, SampleRef, Target

TARGETS = ("mesh",)
MARKERS = {
    "routing": "conformance: requests reach the model they name, through any pod",
    "eviction": "conformance: a full pod evicts its least recently used model",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance")
    group.addoption("--target", dest="conformance_target", choices=TARGETS, default="mesh",
                    help="what the conformance checks run against (default: mesh)")
    group.addoption("--endpoint", dest="conformance_endpoint", default="",
                    help="HOST:PORT[,HOST:PORT...] of running ModelMesh pods; default: start a local mesh")
    group.addoption("--min-churn-age-ms", dest="conformance_churn_ms", type=int,
                    default=mesh_target.EMBEDDED_CHURN_MS,
                    help="the endpoints' minChurnAgeMs (the embedded mesh uses %(default)s)")


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def _option(config: pytest.Config, name: str, default: object) -> object:
    # Run as `pytest` from the root, this conftest may load after the command line is parsed.
    return config.getoption(name, default=default)


@pytest.fixture(scope="session")
def run_id() -> str:
    return secrets.token_hex(3)


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           run_id: str) -> Iterator[Target]:
    kind = _option(request.config, "conformance_target", "mesh")
    if kind != "mesh":
        pytest.fail(f"--target {kind}: only `mesh` exists so far")
    endpoint = str(_option(request.config, "conformance_endpoint", "") or "")
    if endpoint:
        churn_ms = int(str(_option(request.config, "conformance_churn_ms", mesh_target.EMBEDDED_CHURN_MS)))
        chosen = mesh_target.from_endpoints([e.strip() for e in endpoint.split(",") if e.strip()], churn_ms)
        try:
            yield chosen
        finally:
            chosen.close()
        return
    with mesh_target.local_mesh(tmp_path_factory.mktemp("conformance-mesh"), f"conf-{run_id}") as embedded:
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


@pytest.fixture(scope="session")
def session_deployments(target: Target, run_id: str) -> Iterator[Deployments]:
    made = Deployments(target, f"conf-{run_id}")
    yield made
    failures = made.remove_all()
    if failures:
        pytest.fail("teardown left models behind: " + "; ".join(failures))


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
