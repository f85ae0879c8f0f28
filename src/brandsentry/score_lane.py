"""Entry point of a spawned scoring lane (see `brandsentry.score._score_in_lanes`).

Kept free of heavy imports on purpose: the lane asks the kernel to kill it when its parent dies before it
imports torch, timm, FAISS and the rest (tens of seconds on a busy box), so a killed `brandsentry score`
never leaves a lane behind, not even one still starting up.
"""

from __future__ import annotations

import contextlib
import os


def lane_entry(lane: int, spec: dict, tasks, results) -> None:
    _die_with_parent(int(spec["parent"]))
    from brandsentry.score import _lane_main  # the heavy imports, now that the lane dies with its parent

    _lane_main(lane, spec, tasks, results)


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when its parent dies; exit now if the parent is already gone."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):  # not Linux: the parent's cleanup must do
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
