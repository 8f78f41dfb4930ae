"""The docs name what the repository holds: every module in docs/architecture.md, every check module in
docs/conformance.md, every deployable unit in the README, and every relative link of those pages resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.static

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tools" / "mmgitops"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")
CHECKS = sorted((PACKAGE / "conformance" / "checks").glob("test_*.py"))
UNITS = sorted(p for p in (ROOT / "components").glob("*/*") if (p / "kustomization.yaml").is_file())
PAGES = {"architecture": ROOT / "docs" / "architecture.md", "conformance": ROOT / "docs" / "conformance.md",
         "readme": ROOT / "README.md"}
assert MODULES and CHECKS and UNITS, f"nothing found under {ROOT}"

LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def links(page: Path) -> set[Path]:
    """The repository paths a page links to, resolved from the page's folder."""
    return {(page.parent / target).resolve() for target in LINK.findall(page.read_text(encoding="utf-8"))
            if "://" not in target}


@pytest.mark.parametrize("page", PAGES.values(), ids=PAGES.keys())
def test_every_relative_link_resolves(page: Path) -> None:
    assert sorted(str(p.relative_to(ROOT)) for p in links(page) if not p.exists()) == []


def test_every_module_is_in_the_architecture_page() -> None:
    linked = links(PAGES["architecture"])
    assert [str(m.relative_to(ROOT)) for m in MODULES if m.resolve() not in linked] == []


def test_every_check_module_is_in_the_conformance_page() -> None:
    linked = links(PAGES["conformance"])
    assert [str(m.relative_to(ROOT)) for m in CHECKS if m.resolve() not in linked] == []


def test_every_unit_is_in_the_readme() -> None:
    linked = links(PAGES["readme"])
    assert [str(u.relative_to(ROOT)) for u in UNITS if u.resolve() not in linked] == []
