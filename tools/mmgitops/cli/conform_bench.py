"""`mmgitops bench conform`: what the conformance suite costs, printed as figures.

1. Suite wall time: the whole suite on the embedded local mesh, as `mmgitops conform` runs it.
2. Harness overhead per inference: a check's request through the target (`MeshTarget.infer`) against the
   same request sent with a bare, prebuilt gRPC stub call to the same pod, so that what the suite measures
   (e.g. warm latencies) is the mesh's and not the harness's.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from mmgitops.errors import ToolError
from mmgitops.lab.mesh.bench_report import percentile, timed
from mmgitops.lab.state import state_root

# ModelMesh's own clocks set the floor: every load of a fill starts 2 s after the one before
# (INSTANCE_REC_PUBLISH_MIN_PERIOD_MS), about 60 of them, and a group that needs empty pods may wait for the
# 40 s publish task (INSTANCE_REC_PUBLISH_FREQ_MS).
SUITE_GOAL_S = 360.0
OVERHEAD_GOAL_MS = 0.2
TAIL_LINES = 20
WARMUP = 200

MODEL = "bench-conform-m0"
MESH_FLAGS = ("--instances", "1", "--samples", "2", "--no-register")

# pytest's last line, e.g. "==== 27 passed, 1 skipped in 95.20s (0:01:35) ====".
STATS_LINE = re.compile(r" in \d+(?:\.\d+)?s\b")
COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?)\b")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class SuiteRun:
    seconds: float
    exit_code: int
    counts: dict[str, int]
    tail: list[str]  # the last lines of its output, shown when it failed


@dataclass(frozen=True)
class Overhead:
    harness_ms: list[float]
    bare_ms: list[float]


# ---- parsing and formatting (pure) --------------------------------------------------------------
def parse_summary(output: str) -> dict[str, int]:
    """Counts from pytest's final summary line; {} when there is none (pytest died before printing it).

    The last matching line wins: the conformance summary table printed before it may hold counts too."""
    for line in reversed(ANSI.sub("", output).splitlines()):
        if STATS_LINE.search(line) and (found := COUNT.findall(line)):
            return {("errors" if kind == "error" else kind): int(n) for n, kind in found}
    return {}


def verdict(value: float, goal: float) -> str:
    return "met" if value <= goal else "missed"


def suite_lines(run: SuiteRun) -> list[str]:
    counts = ", ".join(f"{n} {kind}" for kind, n in run.counts.items()) or "no pytest summary line"
    lines = ["conformance suite on the embedded local mesh (python -m mmgitops conform):",
             f"  exit {run.exit_code}: {counts}",
             f"  wall {run.seconds:.1f} s (goal: at most {SUITE_GOAL_S:.0f} s): {verdict(run.seconds, SUITE_GOAL_S)}"]
    if run.exit_code != 0:
        lines.append(f"  the suite failed (exit {run.exit_code}); the last {len(run.tail)} lines of its output:")
        lines += [f"    {line}" for line in run.tail]
    return lines


def overhead_lines(overhead: Overhead) -> list[str]:
    paths = {"harness: target.infer": overhead.harness_ms, "bare stub: ModelInfer": overhead.bare_ms}
    lines = [f"harness overhead per inference ({len(overhead.harness_ms)} requests per path, interleaved; "
             f"one warm model on a 1-instance local mesh):"]
    lines += [f"  {label:<22} p50 {percentile(ms, 50):6.3f} ms  p99 {percentile(ms, 99):6.3f} ms"
              for label, ms in paths.items()]
    added = percentile(overhead.harness_ms, 50) - percentile(overhead.bare_ms, 50)
    lines.append(f"  overhead p50 {added:.3f} ms (goal: at most {OVERHEAD_GOAL_MS} ms): "
                 f"{verdict(added, OVERHEAD_GOAL_MS)}")
    return lines


def render(suite: SuiteRun | None, overhead: Overhead) -> str:
    return "\n".join([*(suite_lines(suite) if suite else []), *overhead_lines(overhead)])


def to_json(suite: SuiteRun | None, overhead: Overhead) -> str:
    """The same figures as `render`, as numbers; `suite` is null when it was not run (--no-suite)."""
    harness, bare = overhead.harness_ms, overhead.bare_ms
    added = percentile(harness, 50) - percentile(bare, 50)
    return json.dumps({
        "bench": "conform",
        "suite": None if suite is None else {
            "wall_s": suite.seconds, "exit_code": suite.exit_code, "counts": suite.counts,
            "wall_goal_max_s": SUITE_GOAL_S, "goal_met": suite.seconds <= SUITE_GOAL_S,
            "tail": suite.tail if suite.exit_code != 0 else []},
        "overhead": {
            "requests": len(harness), "harness_p50_ms": percentile(harness, 50),
            "harness_p99_ms": percentile(harness, 99), "bare_p50_ms": percentile(bare, 50),
            "bare_p99_ms": percentile(bare, 99), "added_p50_ms": added, "added_goal_max_ms": OVERHEAD_GOAL_MS,
            "goal_met": added <= OVERHEAD_GOAL_MS}}, indent=2)


def one_line(error: Exception) -> str:
    """A multi-line error (local mesh up's stderr) as its first and last lines, which say what and why."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()] or [type(error).__name__]
    return lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"


# ---- measuring ----------------------------------------------------------------------------------
def run_suite(progress: Callable[[str], None]) -> SuiteRun:
    progress("running the conformance suite on the embedded local mesh ...")
    started = time.perf_counter()
    # Captured, not streamed: the figures are the point, and the output is shown only when the suite fails.
    done = subprocess.run([sys.executable, "-m", "mmgitops", "conform"], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - started
    output = ANSI.sub("", done.stdout)
    return SuiteRun(seconds, done.returncode, parse_summary(output), output.splitlines()[-TAIL_LINES:])


def measure_overhead(progress: Callable[[str], None], repeats: int) -> Overhead:
    # Imported here: grpc and MLServer take seconds to import, and the pure functions above need neither.
    import grpc

    from mmgitops.conformance import mesh_target
    from mmgitops.conformance.target import TargetError
    from mmgitops.lab.mesh import control
    from mmgitops.modelmesh import samples, stubs

    # Named and placed like the suite's own meshes, so `mmgitops conform cleanup` stops it after a hard kill.
    root, mesh = state_root(), f"conf-{secrets.token_hex(3)}"
    progress("starting a 1-instance local mesh ...")
    try:
        with mesh_target.local_mesh(root, mesh, MESH_FLAGS) as target:
            pod = mesh_target.pods_of(control.read_state(mesh, root) or {})[0]
            sample = target.samples()[0]
            target.deploy(MODEL, sample)
            channel = grpc.insecure_channel(pod.grpc)
            try:
                stub = stubs.v2()[1].GRPCInferenceServiceStub(channel)
                request = samples.probe_request(MODEL)

                def harness() -> object:
                    return target.infer(MODEL, pod=pod.id)

                def bare() -> object:
                    return stub.ModelInfer(request, timeout=60)

                if (answer := target.infer(MODEL, pod=pod.id).answer) != sample.answer:
                    raise ToolError(f"{MODEL} answered {answer}, expected {sample.answer}: the mesh is broken")
                progress("warming up ...")
                timed(harness, WARMUP)
                timed(bare, WARMUP)
                harness_ms: list[float] = []
                bare_ms: list[float] = []
                for k in range(repeats):
                    if k % 500 == 0:
                        progress(f"harness overhead: request {k}/{repeats} per path ...")
                    # Request by request, and in swapped order every other time: machine noise and
                    # whatever the first call of a pair leaves warm fall on both paths alike.
                    first, second = (harness, bare) if k % 2 == 0 else (bare, harness)
                    a, b = timed(first, 1)[0], timed(second, 1)[0]
                    harness_ms.append(a if k % 2 == 0 else b)
                    bare_ms.append(b if k % 2 == 0 else a)
            finally:
                channel.close()
                # The mesh stops right after: a failed undeploy must not hide the error that got us here.
                with contextlib.suppress(TargetError):
                    target.undeploy(MODEL)
    except (RuntimeError, TargetError) as error:
        raise ToolError(f"harness overhead: {one_line(error)}") from error
    return Overhead(harness_ms, bare_ms)


def run(progress: Callable[[str], None], repeats: int = 2000, suite: bool = True, output: str = "text") -> str:
    """Returns a printable multi-line text block of figures, or with output "json" one JSON object."""
    if repeats < 1:
        raise ToolError(f"--repeats {repeats}: expected at least 1")
    # The short figure first, on a quiet machine: the suite's meshes take a while to wind down after it.
    overhead = measure_overhead(progress, repeats)
    suite_run = run_suite(progress) if suite else None
    return to_json(suite_run, overhead) if output == "json" else render(suite_run, overhead)
