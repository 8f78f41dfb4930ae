"""Fetch pinned Go modules into the module cache and hand back their directories."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from mmgitops.errors import ToolError
from mmgitops.gitops.pins import CrdModule


def download(modules: list[CrdModule]) -> dict[str, Path]:
    """`go mod download -json` for every module; a module found in the cache costs no network."""
    go = shutil.which("go")
    if not go:
        raise ToolError(
            "the Go toolchain is needed to read the pinned CRDs from the module cache: install Go "
            "(https://go.dev/dl) or pass --crds DIR with the CRD YAML files"
        )
    env = dict(os.environ)
    # The pinned go.sum hashes below are checked instead, so modules that the checksum
    # database does not list (pseudo-versions of some operators) still download.
    env["GONOSUMDB"] = ",".join(m.module for m in modules)
    env["GOFLAGS"] = "-mod=mod"
    proc = subprocess.run(
        [go, "mod", "download", "-json", *(m.ref for m in modules)],
        capture_output=True, text=True, env=env, cwd=Path.home(),
    )
    found: dict[str, dict] = {}
    decoder = json.JSONDecoder()
    text, pos = proc.stdout, 0
    while pos < len(text):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        item, pos = decoder.raw_decode(text, pos)
        found[f"{item.get('Path')}@{item.get('Version')}"] = item
    dirs: dict[str, Path] = {}
    for module in modules:
        item = found.get(module.ref)
        if item is None or item.get("Error") or not item.get("Dir"):
            reason = (item or {}).get("Error") or proc.stderr.strip().splitlines()[-1:] or ["no output"]
            raise ToolError(f"cannot download {module.ref} (pins.toml, {module.name}): {reason}")
        if item.get("Sum") != module.sum:
            raise ToolError(
                f"{module.ref}: go.sum hash {item.get('Sum')} does not match the pinned {module.sum}"
            )
        dirs[module.name] = Path(item["Dir"])
    return dirs
