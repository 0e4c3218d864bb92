"""Say where a strategy's own code failed — its file, line and the cycle — in one line, ahead of any traceback.

A typo inside ``decide()`` used to surface as a 40-line traceback through the engine, the
backtest runner and the command, with the strategy's line somewhere in the middle and the cycle
nowhere. The engine now adds one PEP 678 note to whatever ``decide()`` raised::

    strategy failed: strategies/my.py, line 22, in helper, cycle 2004-08-27 00:00 UTC: NameError: name 'clsoe' is not defined

The exception itself is kept, never wrapped (a crash record must describe the real exception),
so the daemon's full crash record still has every frame and the note at its end. Whoever shows
the failure to a person leads with :func:`strategy_failure` — the commands print it with the
strategy's own frames instead of the whole traceback, the daemon's log line starts with it,
optimize and the runs record it as the run's error.
"""

from __future__ import annotations

import linecache
import traceback
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

__all__ = ["StrategyFailure", "note_strategy_failure", "strategy_failure"]

#: How the note starts; nothing else in the package writes notes that start like this.
NOTE_PREFIX = "strategy failed: "


@dataclass(frozen=True)
class StrategyFailure:
    """Where a strategy's code raised, for people."""

    #: ``<file>, line <n>, in <function>, cycle <time>: <Class>: <message>`` on one line.
    summary: str
    #: The strategy's own frames, outermost first, as ``File "…", line n, in f`` plus the source line.
    frames: tuple[str, ...]

    def text(self) -> str:
        """The summary, then the strategy's frames: what a command prints instead of the whole traceback."""
        return "\n".join([self.summary, *self.frames])


def note_strategy_failure(exc: BaseException, strategy_file: Path, cycle_time: datetime) -> None:
    """Add the one-line summary to ``exc`` as a note (once); a failure with no frame in the strategy file gets none."""
    if strategy_failure(exc) is not None:
        return
    frames = _strategy_frames(exc, strategy_file)
    if not frames:
        return
    last = frames[-1]
    message = " ".join(str(exc).split())
    kind = f"{type(exc).__qualname__}: {message}" if message else type(exc).__qualname__
    moment = cycle_time.strftime("%Y-%m-%d %H:%M") + (" UTC" if cycle_time.utcoffset() is not None else "")
    exc.add_note(f"{NOTE_PREFIX}{strategy_file}, line {last.lineno}, in {last.name}, cycle {moment}: {kind}")


def strategy_failure(exc: BaseException) -> StrategyFailure | None:
    """The failure ``note_strategy_failure`` described, or None when ``exc`` did not come from a strategy's code."""
    for note in getattr(exc, "__notes__", None) or ():
        if isinstance(note, str) and note.startswith(NOTE_PREFIX):
            summary = note[len(NOTE_PREFIX):]
            path = summary.split(", line ", 1)[0]
            frames = []
            for frame in _strategy_frames(exc, Path(path)):
                frames.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}')
                if frame.line:
                    frames.append(f"    {frame.line.strip()}")
            return StrategyFailure(summary, tuple(frames))
    return None


def _strategy_frames(exc: BaseException, strategy_file: Path) -> list[traceback.FrameSummary]:
    """The traceback's frames in the strategy file, outermost first (with their source lines)."""
    name = str(strategy_file)
    found = []
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == name:
            line = linecache.getline(name, lineno, frame.f_globals)
            found.append(traceback.FrameSummary(name, lineno, frame.f_code.co_name, line=line.strip() or None))
    return found
