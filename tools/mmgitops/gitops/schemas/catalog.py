"""Where the schema of each apiVersion/kind comes from: Kubernetes itself or a pinned CRD."""

from __future__ import annotations

from pathlib import Path

from jsonschema import Draft202012Validator

from mmgitops.errors import ToolError
from mmgitops.gitops import gomod, pins
from mmgitops.gitops.schemas.builtin import CLUSTER_SCOPED, BuiltinSchemas
from mmgitops.gitops.schemas.crd import CrdKind, load_crd_files


class Catalog:
    def __init__(self, builtin: BuiltinSchemas, crd_kinds: list[CrdKind]) -> None:
        self.builtin = builtin
        self.crds = {(k.group, k.version, k.kind): k for k in crd_kinds}
        self._validators: dict[tuple[str, str, str], Draft202012Validator] = {}

    def crd(self, group: str, version: str, kind: str) -> CrdKind | None:
        return self.crds.get((group, version, kind))

    def crd_versions(self, group: str, kind: str) -> list[str]:
        return sorted(v for (g, v, k) in self.crds if g == group and k == kind)

    def crd_groups_of(self, kind: str) -> list[str]:
        return sorted({f"{g}/{v}" for (g, v, k) in self.crds if k == kind})

    def validator(self, group: str, version: str, kind: str) -> tuple[str, Draft202012Validator | None]:
        """("crd" | "builtin" | "", validator) for one apiVersion/kind."""
        crd = self.crd(group, version, kind)
        if crd is not None:
            key = (group, version, kind)
            if key not in self._validators:
                self._validators[key] = Draft202012Validator(crd.schema, registry=self.builtin.registry)
            return "crd", self._validators[key]
        found = self.builtin.validator(group, version, kind)
        return ("builtin", found) if found else ("", None)

    def cluster_scoped(self, group: str, kind: str) -> bool | None:
        for (g, _v, k), crd in self.crds.items():
            if g == group and k == kind:
                return crd.scope == "Cluster"
        if self.builtin.versions_of(group, kind):
            return kind in CLUSTER_SCOPED
        return None

    def sources(self) -> list[str]:
        return sorted({k.source for k in self.crds.values()})


def crd_files_from_pins() -> list[tuple[Path, str]]:
    modules = pins.crd_modules()
    dirs = gomod.download(modules)
    files = []
    for module in modules:
        for rel in module.crds:
            path = dirs[module.name] / rel
            if not path.is_file():
                raise ToolError(f"{module.ref} has no {rel} (pins.toml, {module.name})")
            files.append((path, f"{module.ref}/{rel}"))
    return files


def crd_files_from_dir(directory: Path) -> list[tuple[Path, str]]:
    if not directory.is_dir():
        raise ToolError(f"--crds {directory}: not a directory")
    files = sorted(p for p in directory.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
    if not files:
        raise ToolError(f"--crds {directory}: no CRD files (*.yaml, *.yml, *.json) in it")
    return [(p, str(p)) for p in files]


def build(crds_dir: Path | None = None, kubernetes_version: str | None = None) -> Catalog:
    builtin = BuiltinSchemas(kubernetes_version or pins.kubernetes_version())
    files = crd_files_from_dir(crds_dir) if crds_dir else crd_files_from_pins()
    return Catalog(builtin, load_crd_files(files, builtin.object_meta_ref()))
