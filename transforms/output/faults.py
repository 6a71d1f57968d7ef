"""Named points where a fault test can kill the process (``TOKENMILL_FAULT_POINT=name[:n]``: the n-th time).

Unset (always, outside the fault tests) a point costs one dictionary look-up.
"""

from __future__ import annotations

import os
import signal

ENV = "TOKENMILL_FAULT_POINT"
_passed: dict[str, int] = {}


def fault_point(name: str) -> None:
    """SIGKILL this process here if the environment names this point (and this is its n-th pass, default 1)."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _passed[name] = _passed.get(name, 0) + 1
    if _passed[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
