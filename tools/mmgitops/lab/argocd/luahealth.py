"""Argo CD's own Lua engine on health scripts: a small command, built in the Argo CD wrapper module, that runs each
script through gopher-lua as the application controller does for `resource.customizations.health.*`.

lupa (mmgitops.gitops.checks.health) is a different Lua with a different sandbox; this is how the integration tier
checks that both engines give a script's samples the same verdict. Cached under the user's cache directory by
Argo CD version, with the source it was built from, so a changed SOURCE is rebuilt.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmgitops.errors import ToolError
from mmgitops.lab import binaries
from mmgitops.lab.argocd import build

PACKAGE = "luahealth"
BUILD_NAME = "argo-cd-luahealth"  # its key in binaries.BUILD_TIMES

SOURCE = """// Command luahealth runs Argo CD resource health Lua scripts on objects, through the same calls as the
// application controller: gitops-engine's health.GetResourceHealth with util/lua's ResourceHealthOverrides.
//
// stdin: a JSON list of {"script": "...", "object": {...}}.
// stdout: a JSON list, one entry per case: {"status": "...", "message": "..."} or {"error": "..."}.
package main

import (
\t"encoding/json"
\t"fmt"
\t"io"
\t"os"

\t"github.com/argoproj/gitops-engine/pkg/health"
\t"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

\tappv1 "github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
\t"github.com/argoproj/argo-cd/v3/util/lua"
)

type testCase struct {
\tScript string          `json:"script"`
\tObject json.RawMessage `json:"object"`
}

func verdict(c testCase) map[string]string {
\t// As the controller gets live objects: Unstructured decoded by the unstructured JSON scheme, so that
\t// whole numbers arrive as int64 and the rest as float64.
\tobj := &unstructured.Unstructured{}
\tif err := obj.UnmarshalJSON(c.Object); err != nil {
\t\treturn map[string]string{"error": "object: " + err.Error()}
\t}
\t// The operator writes spec.resourceHealthChecks[] into argocd-cm as resource.customizations.health.<group>_<kind>,
\t// and the settings manager turns that key into <group>/<kind> (<kind> for the core group): GetConfigMapKey.
\tkey := lua.GetConfigMapKey(obj.GroupVersionKind())
\toverrides := lua.ResourceHealthOverrides{key: appv1.ResourceOverride{HealthLua: c.Script}}
\tstatus, err := health.GetResourceHealth(obj, overrides)
\tif err != nil {
\t\treturn map[string]string{"error": err.Error()}
\t}
\tif status == nil {
\t\treturn map[string]string{"error": "no health script applies to " + key}
\t}
\treturn map[string]string{"status": string(status.Status), "message": status.Message}
}

func main() {
\tinput, err := io.ReadAll(os.Stdin)
\tif err != nil {
\t\tfmt.Fprintln(os.Stderr, "luahealth: reading stdin:", err)
\t\tos.Exit(2)
\t}
\tvar cases []testCase
\tif err := json.Unmarshal(input, &cases); err != nil {
\t\tfmt.Fprintln(os.Stderr, "luahealth: stdin is not a JSON list of {script, object}:", err)
\t\tos.Exit(2)
\t}
\tresults := make([]map[string]string, 0, len(cases))
\tfor _, c := range cases {
\t\tresults = append(results, verdict(c))
\t}
\tif err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
\t\tfmt.Fprintln(os.Stderr, "luahealth: writing stdout:", err)
\t\tos.Exit(2)
\t}
}
"""


def planned() -> Path:
    _, version = build.module()
    return binaries.cache_root() / "bin" / f"argocd-luahealth-{version}" / PACKAGE


def current(binary: Path) -> bool:
    """Built, and from this SOURCE: the copy of the source published next to the binary says which."""
    source = binary.with_name("main.go")
    return binary.is_file() and source.is_file() and source.read_text(encoding="utf-8") == SOURCE


def ensure(progress: Callable[[str], None]) -> Path:
    """The command's binary, built in Argo CD's wrapper module when missing (minutes cold, seconds once the Go
    build cache holds Argo CD's packages)."""
    out = planned()
    if current(out):
        return out
    with binaries.building(progress):
        return out if current(out) else _build(out, progress)


def _build(out: Path, progress: Callable[[str], None]) -> Path:
    _, version = build.module()
    work = build.wrapper(progress)
    binaries.write(work / PACKAGE / "main.go", SOURCE)
    tmp = out.parent.with_name(out.parent.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    # The same flags as build.build_argocd, so the packages both builds share come from the Go build cache.
    binaries.run_go([binaries.go(), "build", "-trimpath", "-ldflags", "-s -w", "-o", f"{tmp}/{PACKAGE}",
                     f"./{PACKAGE}"], work, f"argo-cd {version} Lua health", progress, name=BUILD_NAME)
    binaries.write(tmp / "main.go", SOURCE)
    binaries.publish(tmp, out.parent)
    return out


def evaluate(cases: list[dict[str, Any]], progress: Callable[[str], None] = lambda _: None) -> list[dict[str, str]]:
    """Argo CD's verdict on each {"script", "object"} case: {"status", "message"} or {"error"}, in order; one run of
    the command for all of them."""
    binary = ensure(progress)
    try:
        proc = subprocess.run([str(binary)], input=json.dumps(cases), capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise ToolError(f"{binary}: no answer in 300 s for {len(cases)} health cases") from None
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        raise ToolError(f"{binary} failed (exit {proc.returncode}): {lines[-1] if lines else 'no output'}")
    try:
        results = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise ToolError(f"{binary}: output is not JSON: {exc}") from None
    if not isinstance(results, list) or len(results) != len(cases):
        raise ToolError(f"{binary}: expected {len(cases)} results, got {proc.stdout[:200]!r}")
    return results
