"""How the lab starts its server processes: output appended to a log, no stdin, and by default a session of their
own, so that stopping one by its process group stops what it started too."""

from __future__ import annotations

import ctypes
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

PR_SET_PDEATHSIG = 1


def spawn(argv: Sequence[object], log: Path, *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
          own_group: bool = True, preexec_fn: Callable[[], None] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([str(a) for a in argv], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=None if env is None else dict(env), cwd=cwd, start_new_session=own_group,
                                preexec_fn=preexec_fn)


def die_with_parent() -> None:
    # Like a container in a pod: when the process that started this one dies, even by SIGKILL, this one goes too.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
