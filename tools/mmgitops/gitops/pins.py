"""The pinned versions in data/pins.toml."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class CrdModule:
    name: str
    module: str
    version: str
    sum: str
    crds: tuple[str, ...]

    @property
    def ref(self) -> str:
        return f"{self.module}@{self.version}"


def load() -> dict[str, Any]:
    text = resources.files("mmgitops").joinpath("data/pins.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def crd_modules() -> list[CrdModule]:
    return [
        CrdModule(m["name"], m["module"], m["version"], m["sum"], tuple(m["crds"]))
        for m in load()["crd_module"]
    ]


def kubernetes_version() -> str:
    return str(load()["kubernetes"]["version"])
