"""Build Argo CD's application controller and repo server, and kustomize, from pinned Go modules.

One binary holds both Argo CD commands and picks one by the name it runs as, like Argo CD's own image;
it is built through a wrapper module that requires the pinned argo-cd module and copies its `replace`
block (its k8s.io pins), with a main package of ours that leaves out the API server, UI and CLI.
Cached under the user's cache directory by version, like the control plane.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mmgitops.errors import ToolError
from mmgitops.gitops import pins
from mmgitops.lab import binaries

CONTROLLER, REPO_SERVER, ASK_PASS = "argocd-application-controller", "argocd-repo-server", "argocd-git-ask-pass"
ASK_PASS_SOCKET = "reposerver-ask-pass.sock"

MAIN = """// Command argocd runs the Argo CD component named by how it is invoked (argv[0] or ARGOCD_BINARY_NAME).
package main

import (
\t"fmt"
\t"os"
\t"path/filepath"

\t"github.com/spf13/cobra"

\tappcontroller "github.com/argoproj/argo-cd/v3/cmd/argocd-application-controller/commands"
\tgitaskpass "github.com/argoproj/argo-cd/v3/cmd/argocd-git-ask-pass/commands"
\treposerver "github.com/argoproj/argo-cd/v3/cmd/argocd-repo-server/commands"
)

func main() {
\tname := filepath.Base(os.Args[0])
\tif env := os.Getenv("ARGOCD_BINARY_NAME"); env != "" {
\t\tname = env
\t}
\tcommands := map[string]func() *cobra.Command{
\t\t"argocd-application-controller": appcontroller.NewCommand,
\t\t"argocd-repo-server":            reposerver.NewCommand,
\t\t"argocd-git-ask-pass":           gitaskpass.NewCommand,
\t}
\tnewCommand, ok := commands[name]
\tif !ok {
\t\tfmt.Fprintf(os.Stderr, "run this binary as argocd-application-controller or argocd-repo-server, not %q\\n", name)
\t\tos.Exit(2)
\t}
\tif err := newCommand().Execute(); err != nil {
\t\tos.Exit(1)
\t}
}
"""


@dataclass(frozen=True)
class Binaries:
    argocd: Path          # the multi-call binary
    kustomize: Path

    def command(self, name: str) -> Path:
        """The binary under a component's name (a symlink), as Argo CD's image installs it."""
        return self.argocd.parent / name

    def all(self) -> list[Path]:
        return [self.argocd, self.command(CONTROLLER), self.command(REPO_SERVER), self.command(ASK_PASS),
                self.kustomize]


def module() -> tuple[str, str]:
    """(module path, version) of Argo CD: the crd_module that [argocd] names in pins.toml."""
    data = pins.load()
    wanted = data["argocd"]["crd_module"]
    entry = next((m for m in data["crd_module"] if m["name"] == wanted), None)
    if entry is None:
        raise ToolError(f"pins.toml: [argocd] crd_module = {wanted!r} names no [[crd_module]]")
    return entry["module"], entry["version"]


def kustomize_version() -> str:
    return str(pins.load()["kustomize"]["version"])


def planned() -> Binaries:
    _, version = module()
    root = binaries.cache_root() / "bin"
    return Binaries(root / f"argocd-{version}" / "argocd", root / f"kustomize-{kustomize_version()}" / "kustomize")


def missing() -> list[Path]:
    return [p for p in planned().all() if not p.exists()]


def _replace_block(go_mod: Path) -> str:
    """The module's own `replace (...)` block: replace directives apply only in the main module."""
    match = re.search(r"^replace \($.*?^\)$", go_mod.read_text(encoding="utf-8"), re.M | re.S)
    return match.group(0) if match else ""


def _download(path: str, version: str) -> Path:
    proc = subprocess.run([binaries.go(), "mod", "download", "-json", f"{path}@{version}"],
                          capture_output=True, text=True, env=binaries.go_env())
    info = json.loads(proc.stdout or "{}")
    if proc.returncode != 0 or "Dir" not in info:
        raise ToolError(f"go mod download {path}@{version} failed: {info.get('Error') or proc.stderr.strip()}")
    return Path(info["Dir"])


def wrapper(progress: Callable[[str], None]) -> Path:
    """The wrapper module's directory: a go.mod that requires the pinned argo-cd with its replace block, and
    our main package. Other commands that need Argo CD's packages add a package directory of their own."""
    path, version = module()
    progress(f"argo-cd {version}: reading its go.mod")
    source = _download(path, version)
    work = binaries.cache_root() / "build" / f"argocd-{version}"
    go_line = re.search(r"^go (\S+)$", (source / "go.mod").read_text(encoding="utf-8"), re.M)
    binaries.write(work / "go.mod", f"module mmgitops.local/argocd\n\ngo {go_line.group(1) if go_line else '1.24'}\n\n"
                   f"require {path} {version}\n\n{_replace_block(source / 'go.mod')}\n")
    binaries.write(work / "main.go", MAIN)
    return work


def build_argocd(out: Path, progress: Callable[[str], None]) -> None:
    path, version = module()
    work = wrapper(progress)
    # The repo server's git credential socket is a fixed /tmp path (util/askpass/common.go); relative, it lands in
    # each instance's own working directory, so a test's Argo CD and a user's do not take each other's.
    ldflags = " ".join(["-s -w", f"-X {path}/common.version={version.lstrip('v')}",
                        f"-X {path}/common.gitTreeState=clean", f"-X {path}/util/askpass.SocketPath={ASK_PASS_SOCKET}"])
    tmp = out.with_name(out.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    binaries.run_go([binaries.go(), "build", "-trimpath", "-ldflags", ldflags, "-o", f"{tmp}/argocd", "."], work,
                    f"argo-cd {version}", progress)
    for name in (CONTROLLER, REPO_SERVER, ASK_PASS):
        (tmp / name).symlink_to("argocd")
    binaries.publish(tmp, out)


def build_kustomize(out: Path, progress: Callable[[str], None]) -> None:
    version = kustomize_version()
    tmp = out.with_name(out.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    binaries.run_go([binaries.go(), "install", f"sigs.k8s.io/kustomize/kustomize/v5@{version}"], Path.home(),
                    f"kustomize {version}", progress, {"GOBIN": str(tmp)})
    binaries.publish(tmp, out)


def ensure(progress: Callable[[str], None]) -> tuple[Binaries, list[str]]:
    """The binaries, building what is missing; and the names of what was built now."""
    want = planned()
    built = []
    with binaries.building(progress):
        if not all(p.exists() for p in want.all()[:-1]):
            build_argocd(want.argocd.parent, progress)
            built.append(f"argo-cd {module()[1]}")
        if not want.kustomize.is_file():
            build_kustomize(want.kustomize.parent, progress)
            built.append(f"kustomize {kustomize_version()}")
    return want, built
