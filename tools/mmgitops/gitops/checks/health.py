"""Run Argo CD Lua health checks in a real Lua VM, as Argo CD does."""

from __future__ import annotations

from importlib import resources
from typing import Any

import lupa

from mmgitops.errors import Finding
from mmgitops.gitops.objects import K8sObject, dig
from mmgitops.gitops.yamlio import load_all

# The kinds whose readiness the sync waves of this repository wait on.
REQUIRED_KINDS = (
    ("datasciencecluster.opendatahub.io", "DataScienceCluster"),
    ("dscinitialization.opendatahub.io", "DSCInitialization"),
    ("nvidia.com", "ClusterPolicy"),
    ("nfd.openshift.io", "NodeFeatureDiscovery"),
    ("argoproj.io", "Application"),
)


def samples() -> list[dict[str, Any]]:
    text = resources.files("mmgitops").joinpath("data/health-samples.yaml").read_text(encoding="utf-8")
    return load_all(text)[0]


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    return value


# Argo CD's Lua VM (util/lua/lua.go) opens only the base, table and package libraries and preloads an `os` with
# `time` and `date`: a script that uses string, math or a string method fails there, so it fails here too.
SANDBOX = """
local time, date = os.time, os.date
string, math, utf8, io, debug, coroutine, os = nil, nil, nil, nil, nil, nil, nil
package.loaded.os = {time = time, date = date}
getmetatable("").__index = nil
"""


def run_check(script: str, obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) that the script returns for obj, in Argo CD's sandbox; status "error: ..." if it fails."""
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)
    runtime.execute(SANDBOX)
    runtime.globals().obj = _to_lua(runtime, obj)
    try:
        result = runtime.execute(script)
    except lupa.LuaError as exc:
        return f"error: {str(exc).splitlines()[0]}", ""
    if result is None or not hasattr(result, "keys"):
        return "error: the script returned no table", ""
    return str(result["status"]), str(result["message"] or "")


def health_checks(obj: K8sObject) -> list[tuple[int, dict[str, Any]]]:
    checks = dig(obj.body, "spec", "resourceHealthChecks")
    return [(i, c) for i, c in enumerate(checks or []) if isinstance(c, dict)]


def cases_for(check: dict[str, Any]) -> list[dict[str, Any]]:
    """The samples a resourceHealthChecks entry applies to: those of its group and kind."""
    return [s for s in samples() if s["object"]["kind"] == check.get("kind")
            and s["object"]["apiVersion"].rpartition("/")[0] == check.get("group")]


def check_instance(obj: K8sObject, counts: dict[str, int]) -> list[Finding]:
    """Every health check on an ArgoCD CR, against every sample of its kind; and coverage."""
    findings = []
    checks = health_checks(obj)
    covered = {(c.get("group", ""), c.get("kind", "")) for _, c in checks}
    for group, kind in REQUIRED_KINDS:
        if (group, kind) not in covered:
            findings.append(Finding(obj.file, obj.ref, "spec.resourceHealthChecks",
                                    f"no health check for {group}/{kind}", "health-check"))
    for index, check in checks:
        for case in cases_for(check):
            status, message = run_check(str(check.get("check", "")), case["object"])
            counts["health_cases"] = counts.get("health_cases", 0) + 1
            if status != case["expect"]:
                findings.append(Finding(
                    obj.file, obj.ref, f"spec.resourceHealthChecks[{index}].check",
                    f"{check.get('kind')} sample expected {case['expect']}, script says {status}",
                    "health-check"))
            elif "message" in case and message != case["message"]:
                # A sample may pin the message too: Argo CD shows it on the resource and the Application.
                findings.append(Finding(
                    obj.file, obj.ref, f"spec.resourceHealthChecks[{index}].check",
                    f"{check.get('kind')} sample expected message {case['message']!r}, script says {message!r}",
                    "health-check"))
    return findings
