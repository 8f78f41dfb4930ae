"""A kubeconfig the client cannot use is one line naming the file and what is wrong, for `apply` and `conform` alike
(mmgitops/kubeconfig.py), never a traceback from the `kubernetes` client."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmgitops.errors import ToolError
from mmgitops.kubeconfig import api_client

pytestmark = pytest.mark.unit
GOOD = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "SERVER"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
users: [{name: u, user: {token: t}}]
"""


@pytest.mark.parametrize(("content", "message"), [
    (b"clusters: [\n", "not YAML (line 2)"),
    (b"- a\n- b\n", "not a kubeconfig (expected a mapping with clusters, contexts and users)"),
    (bytes(range(128, 256)), "not a text file (not UTF-8)"),
    (GOOD.replace("SERVER", "not a url").encode(), "server 'not a url' is not a URL (https://HOST:PORT)"),
    (GOOD.replace("current-context: x", "current-context: gone").encode(), "gone"),
    (b"", "file is empty"),
])
def test_a_kubeconfig_the_client_cannot_use_is_one_line_naming_it(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "kubeconfig"
    path.write_bytes(content)
    with pytest.raises(ToolError) as refused:
        api_client(str(path))
    assert str(refused.value).startswith(f"kubeconfig {path}: ") and message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_usable_kubeconfig_gives_its_server(tmp_path: Path):
    path = tmp_path / "kubeconfig"
    path.write_text(GOOD.replace("SERVER", "https://127.0.0.1:6443"))
    assert api_client(str(path)).configuration.host == "https://127.0.0.1:6443"


def test_apply_with_a_broken_kubeconfig_exits_2_in_one_line(mmgitops_process, tmp_path: Path):
    path = tmp_path / "kubeconfig"
    path.write_text("- a\n")
    run = mmgitops_process("apply", "overlays/conformance", "--kubeconfig", str(path), "--dry-run=server")
    assert (run.returncode, run.stderr.count("\n")) == (2, 1), run.stderr
    assert "not a kubeconfig" in run.stderr and "Traceback" not in run.stderr
