"""A 2-pod reference mesh (real ModelMesh built from the upstream tarballs), started and stopped through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mmgitops.errors import ToolError
from mmgitops.lab.reference import build

ROOT = Path(__file__).resolve().parents[2]


def mmgitops(*args: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmgitops", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=timeout, stdin=subprocess.DEVNULL)


def _sources_reason() -> str:
    try:
        build.find_sources(None)
    except ToolError as exc:
        return str(exc)
    if os.geteuid() != 0:
        return "reference pods need root for their network namespace"
    return ""


@pytest.fixture(scope="session")
def reference_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    reason = _sources_reason()
    if reason:
        pytest.skip(reason)
    env = {**os.environ, "MMGITOPS_MESH_NAME": "reftest", "MMGITOPS_STATE": str(tmp_path_factory.mktemp("state"))}
    built = mmgitops("local", "build", "reference", env=env, timeout=1800)
    if built.returncode != 0:
        pytest.fail(f"mmgitops local build reference failed: {built.stderr.strip()[-1000:]}")
    return env


@pytest.fixture(scope="session")
def reference_mesh(reference_env: dict[str, str]) -> Iterator[dict[str, Any]]:
    mmgitops("local", "mesh", "down", env=reference_env)
    up = mmgitops("local", "mesh", "up", "--engine", "reference", "--instances", "2", "--capacity", "81920",
                  "--samples", "2", "--format", "json", env=reference_env, timeout=600)
    if up.returncode != 0:
        pytest.fail(f"reference mesh up failed: {up.stderr.strip()[-2000:]}")
    state = json.loads(up.stdout)
    yield state
    mmgitops("local", "mesh", "down", env=reference_env)
