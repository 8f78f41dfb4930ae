"""Generated broken input against the entry points: whatever the bytes, the answer is a value or the one-line error
the CLI prints (ToolError, pytest.UsageError), never another exception. Examples are few and derandomized, so the
tier stays fast and a failure repeats; hypothesis shrinks it to the smallest input that breaks the promise."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mmgitops.errors import ToolError
from mmgitops.gitops.checks import cel  # noqa: F401  celpy raises the recursion limit on import: not inside a test

pytestmark = pytest.mark.unit
CHECKED = settings(max_examples=60, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

YAML_PIECES = st.sampled_from(["a: 1\n", "- x\n", "&a [*a]\n", "*b\n", "a: &x [1]\nb: [*x, *x]\n", "a: 1\na: 2\n",
                               "{", "]", ": :", "\t", "---\n", "kind: ConfigMap\n", "metadata: {name: n}\n",
                               "apiVersion: v1\n", "!!python/object:os.system\n", "'", "\x00", "\xff", "é"])
# Text that is YAML-like enough to reach the parser's corners, and bytes that are not text at all.
BROKEN = st.one_of(st.lists(YAML_PIECES, max_size=8).map("".join).map(str.encode), st.binary(max_size=200))


def _file(content: bytes, name: str) -> Path:
    directory = Path(tempfile.mkdtemp())
    path = directory / name
    path.write_bytes(content)
    return path


@CHECKED
@given(BROKEN)
def test_a_yaml_file_is_objects_or_findings(content: bytes):
    from mmgitops.gitops import yamlio

    docs, findings = yamlio.load_file(_file(content, "x.yaml"), "x.yaml")
    assert (docs == []) or not findings
    assert all("\n" not in f.line() for f in findings)


@CHECKED
@given(BROKEN)
def test_a_kubeconfig_is_a_client_or_one_line(content: bytes):
    from mmgitops.kubeconfig import api_client

    try:
        api_client(str(_file(content, "kubeconfig")))
    except ToolError as error:
        assert "\n" not in str(error)


@CHECKED
@given(st.one_of(BROKEN, st.dictionaries(st.text(max_size=5), st.integers()).map(json.dumps).map(str.encode)))
def test_a_state_file_is_a_mapping_nothing_or_one_line(content: bytes):
    from mmgitops.lab.state import read_json

    try:
        assert isinstance(read_json(_file(content, "cluster.json")), dict)
    except ToolError as error:
        assert "\n" not in str(error)


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                           st.sampled_from(["tests", "nodeid", "group", "outcome", "figures", "counts", "x"]), inner,
                           max_size=4), max_leaves=12)


@CHECKED
@given(JSONISH)
def test_a_results_json_renders_or_is_one_line(value: object):
    from mmgitops.conformance import report

    directory = _file(json.dumps(value).encode(), "results.json").parent
    try:
        report.render(directory)
    except ToolError as error:
        assert "\n" not in str(error)


NUMBERS = st.one_of(st.integers(), st.floats(), st.text(max_size=6))


@CHECKED
@given(st.dictionaries(st.sampled_from(["cold_budget_ms", "cold_loads", "packing_models", "capacity_models",
                                        "min_churn_age_ms", "rest_port"]), NUMBERS, max_size=3))
def test_suite_options_are_settings_or_a_usage_error(values: dict[str, object]):
    from mmgitops.conformance import settings as suite_settings

    try:
        suite_settings.from_values(values)
    except pytest.UsageError as error:
        assert "\n" not in str(error)


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(BROKEN)
def test_validate_on_a_generated_file_returns_findings_not_an_exception(cli, content: bytes):
    """Through `main()`, as a user runs `mmgitops validate FILE`: an exception would escape into this test."""
    path = _file(content, "manifest.yaml")
    run = cli("validate", str(path))
    assert run.returned and run.code in (0, 1), run.out + run.err
