"""One reference pod's launcher: `python -m mmgitops.lab.reference.pod --spec FILE`.

Started inside the reference network namespace in a session of its own; it starts the pod's
containers (FILE: a list of {name, argv, env, cwd, log}) as its children, each dying with it. So
`killpg(pid, SIGKILL)` takes the whole pod down like a lost node, and SIGTERM does the same. When a
container exits, the launcher takes the rest down and exits: the pod is gone, as after a crash loop.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from mmgitops.lab.spawn import die_with_parent, spawn


def _kill_all(signum: int = 0, frame: FrameType | None = None) -> None:
    os.killpg(os.getpgrp(), signal.SIGKILL)


def run(spec: list[dict[str, object]]) -> int:
    signal.signal(signal.SIGTERM, _kill_all)
    signal.signal(signal.SIGINT, _kill_all)
    children: dict[int, str] = {}
    for container in spec:
        proc = spawn(container["argv"], Path(str(container["log"])),  # type: ignore[arg-type]
                     env={k: str(v) for k, v in container["env"].items()},  # type: ignore[attr-defined]
                     cwd=Path(str(container["cwd"])), own_group=False, preexec_fn=die_with_parent)
        children[proc.pid] = str(container["name"])
        print(f"{time.strftime('%H:%M:%S')} started {container['name']} pid {proc.pid}", flush=True)
    pid, status = os.wait()
    print(f"{time.strftime('%H:%M:%S')} container {children.get(pid, pid)} exited "
          f"({os.waitstatus_to_exitcode(status)}): stopping the pod", flush=True)
    _kill_all()
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmgitops.lab.reference.pod")
    parser.add_argument("--spec", type=Path, required=True)
    args = parser.parse_args(argv)
    return run(json.loads(args.spec.read_text(encoding="utf-8")))


if __name__ == "__main__":
    sys.exit(main())
