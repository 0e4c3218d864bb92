"""What the running executor reports about itself: RunState, crash records and the crash file.

The loop writes one RunState; the web server reads its snapshots; both judge health by one rule
(``health``). Crash records keep the real
exception, every frame and the whole cause/context chain (this is the only package that
imports tblib).
"""

from __future__ import annotations

from tradeexecutor.runstate.crash import (
    CrashFile,
    CrashHistory,
    RebuiltException,
    dump_all_thread_stacks,
    format_exception_record,
    rebuild_exception,
    serialise_exception,
)
from tradeexecutor.runstate.health import HealthLimits, HealthVerdict, assess_health, next_cycle_overdue
from tradeexecutor.runstate.runstate import (
    GIT_COMMIT_ENV,
    IMAGE_FORMATS,
    IMAGE_SIZES,
    IMAGE_THEMES,
    RunState,
    RunStatus,
    image_key,
    read_version_info,
)

__all__ = [
    "GIT_COMMIT_ENV",
    "IMAGE_FORMATS",
    "IMAGE_SIZES",
    "IMAGE_THEMES",
    "CrashFile",
    "CrashHistory",
    "HealthLimits",
    "HealthVerdict",
    "RebuiltException",
    "RunState",
    "RunStatus",
    "assess_health",
    "dump_all_thread_stacks",
    "format_exception_record",
    "image_key",
    "next_cycle_overdue",
    "read_version_info",
    "rebuild_exception",
    "serialise_exception",
]
