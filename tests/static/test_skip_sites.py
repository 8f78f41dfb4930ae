"""Every place the conformance suite does not run a check is listed in docs/conformance.md with its kind: a skip
(`pytest.skip`, the check does not apply to the target) or not reached (`not_reached`, it applies and the run
could not do it). A site the table does not hold, or a row no site backs, fails."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.static

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "tools" / "mmgitops" / "conformance"
SOURCES = [*sorted((SUITE / "checks").glob("test_*.py")), SUITE / "fixtures.py", SUITE / "steps.py"]
KINDS = {"skip": "not applicable", "not_reached": "not reached"}
# | `checks/test_packing.py` `test_the_gpu_pod_...` | not reached | why |
ROW = re.compile(r"^\| `([\w/]+\.py)` `(\w+)` \| (not applicable|not reached) \|", re.M)


def sites() -> list[tuple[str, str, str]]:
    """(file relative to the suite, enclosing function, kind) of every pytest.skip and not_reached call."""
    found = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef):
                continue
            for node in ast.walk(function):
                if not isinstance(node, ast.Call):
                    continue
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name in KINDS and (name != "skip" or getattr(node.func.value, "id", "") == "pytest"):
                    found.append((str(path.relative_to(SUITE)), function.name, KINDS[name]))
    return sorted(found)


def test_every_site_that_does_not_run_a_check_is_listed_with_its_kind():
    listed = sorted(ROW.findall((ROOT / "docs" / "conformance.md").read_text(encoding="utf-8")))
    assert sites(), "no skip site found: the scan is broken"
    assert sites() == listed
