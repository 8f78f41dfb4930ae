"""Each broken fixture fails validation with exactly one line naming file, object and field."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
F = "tests/unit/fixtures"  # as findings name it: the tests run the CLI from the repository root
# Every fixture on disk, found from this file and not from the working directory: pytest run from elsewhere
# still sees them all, and a fixture without a case below fails test_every_fixture_on_disk_has_a_case.
ON_DISK = sorted(p.name for p in (ROOT / F).iterdir())
assert ON_DISK, f"no broken fixtures in {ROOT / F}"

# fixture, file the line names (None: the fixture itself), object, field, rule, severity; one line each in the TSV,
# where a sixth cell `warning` marks a warning (exit 0) and none a finding (exit 1).
CASES = [tuple(None if cell == "-" else cell for cell in [*line.split("\t"), "error"][:6])
         for line in (ROOT / "tests" / "unit" / "broken-fixtures.tsv").read_text(encoding="utf-8").splitlines()
         if line and not line.startswith("#")]


def where(fixture: str, file: str | None, obj: str, field: str, severity: str) -> str:
    expected_file = f"{F}/{fixture}/{file}" if file else f"{F}/{fixture}"
    return f"{expected_file}: {obj}: {field}: " + ("warning: " if severity == "warning" else "")


@pytest.mark.unit
@pytest.mark.parametrize(("fixture", "file", "obj", "field", "rule", "severity"), CASES, ids=[c[0] for c in CASES])
def test_broken_fixture_yields_one_line_naming_file_object_and_field(cli, fixture, file, obj, field, rule, severity):
    run = cli("validate", f"{F}/{fixture}")
    assert run.returned, "main() raised SystemExit instead of returning its exit code"
    assert (run.code, run.err) == ((0 if severity == "warning" else 1), ""), run.out + run.err
    findings, summary = run.lines[:-1], run.lines[-1]
    assert len(findings) == 1, "\n".join(findings)
    assert findings[0].startswith(where(fixture, file, obj, field, severity)), findings[0]
    assert findings[0].endswith(f"[{rule}]")
    assert summary.endswith("0 finding(s), 1 warning(s)" if severity == "warning" else "; 1 finding(s)"), summary


@pytest.mark.unit
def test_every_fixture_on_disk_has_a_case():
    assert sorted(c[0] for c in CASES) == ON_DISK


@pytest.mark.unit
def test_every_fixture_in_one_process_is_findings_not_a_traceback(mmgitops_process):
    # The process contract, which in-process runs cannot see: an exception escaping main() prints a Traceback
    # and exits 1 like findings do. One process for all fixtures: about a second, where one each takes 20.
    proc = mmgitops_process("validate", *(f"{F}/{name}" for name in ON_DISK))
    assert (proc.returncode, proc.stderr) == (1, ""), proc.stderr
    assert "Traceback" not in proc.stdout
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    findings, summary = lines[:-1], lines[-1]
    warnings = sum(": warning: " in line for line in findings)
    assert summary.endswith(f"; {len(findings) - warnings} finding(s), {warnings} warning(s)"), summary
    for fixture, file, obj, field, rule, severity in CASES:
        assert any(line.startswith(where(fixture, file, obj, field, severity)) and line.endswith(f"[{rule}]")
                   for line in findings), f"{fixture}: no [{rule}] finding\n{proc.stdout}"


@pytest.mark.unit
def test_every_policy_rule_is_broken_by_some_fixture(cli):
    run = cli("rules")
    assert (run.returned, run.code) == (True, 0), run.err
    listed = {line.split()[0] for line in run.lines}
    broken = {c[4] for c in CASES}
    assert listed <= broken, f"rules without a breaking fixture: {sorted(listed - broken)}"


@pytest.mark.unit
def test_a_named_pipe_among_the_yaml_files_is_a_finding_not_a_hang(mmgitops_process, tmp_path):
    import os

    (tmp_path / "manifests").mkdir()
    os.mkfifo(tmp_path / "manifests" / "pipe.yaml")  # reading it would block until a writer comes, which none does
    run = mmgitops_process("validate", str(tmp_path / "manifests"), timeout=60)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "pipe.yaml: (document): (object): not a regular file [yaml]" in run.stdout


@pytest.mark.unit
@pytest.mark.parametrize(("fixture", "says"), [
    ("remote-resource", "remote resource https://example.invalid/manifests/configmap.yaml: cannot fetch it ("),
    ("symlink-loop", f"{F}/symlink-loop/loop.yaml is a symlink loop"),
])
def test_a_resource_kustomize_cannot_open_is_named_for_what_it_is(cli, fixture, says):
    """Not "missing file" for a URL or a symlink loop: the user would look for a file that is there."""
    run = cli("validate", f"{F}/{fixture}")
    assert says in run.out, run.out
