"""Per-document time limits for recipe stages, and user regular expressions on a linear-time engine.

- ``StageClock.call`` runs one stage on one document; a watchdog thread stops Python-level work that runs past the
  limit by raising ``StageTimeout`` in the stage's thread (``PyThreadState_SetAsyncExc``), and the chain rejects the
  document as ``<stage>/timeout``. Work inside one long C call cannot be stopped this way, so:
- a ``regex`` stage's pattern runs on RE2 (``google-re2``: linear time, no catastrophic backtracking) whenever it
  means the same there as in Python's ``re``; otherwise (backreferences, lookarounds, Unicode classes, flags) it runs
  on ``re`` in a helper process that is killed and restarted when one document passes the limit.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import re
import threading
import time
import weakref
from typing import Any, Callable

from transforms.recipe.spawn import children_skip_main

DEFAULT_STAGE_TIMEOUT = 10.0  # seconds one stage may spend on one document
TIMEOUT = "timeout"  # the reason of a document a stage did not finish in time


class StageTimeout(Exception):
    """A stage ran past its per-document time limit."""


def _settle() -> None:
    """A Python-level call: a pending asynchronous exception is delivered at its entry."""


class StageClock:
    """Runs stage calls under a per-call time limit, watched by the process's one watchdog thread."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._active: tuple[object, float, int] | None = None  # (token, started, thread id)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, or StageTimeout if it ran past the limit."""
        _watch(self)
        token = object()
        done = False
        result = None
        try:
            with self._lock:
                self._active = (token, time.monotonic(), threading.get_ident())
            result = fn(*args)
            done = True
            self._finish()
            _settle()  # a timeout raised just as fn returned arrives here, inside the try
            _settle()
        except StageTimeout:
            self._finish()
            if not done:
                raise
        return result

    def _finish(self) -> None:
        with self._lock:
            self._active = None

    def check(self, now: float) -> None:
        """Raise StageTimeout in the thread of a call that has run past the limit (once per call)."""
        with self._lock:
            active = self._active
            if active is not None and now - active[1] > self.limit:
                self._active = None
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(active[2]), ctypes.py_object(StageTimeout))


_CLOCKS: "weakref.WeakSet[StageClock]" = weakref.WeakSet()
_WATCHDOG: list[threading.Thread] = []
WATCH_TICK = 0.2  # seconds between the watchdog's looks (a timeout lands within this of its limit)


def _watch(clock: StageClock) -> None:
    if clock in _CLOCKS and _WATCHDOG:
        return
    _CLOCKS.add(clock)
    if not _WATCHDOG:
        thread = threading.Thread(target=_watchdog, name="tokenmill-stage-clock", daemon=True)
        _WATCHDOG.append(thread)
        thread.start()


def _watchdog() -> None:
    while True:
        time.sleep(WATCH_TICK)
        now = time.monotonic()
        for clock in list(_CLOCKS):
            clock.check(now)


# --------------------------------------------------------------------------------------------- regular expressions

_UNICODE_CLASSES = set("wWdDsSbB")  # Unicode-aware in re, ASCII in RE2


def re2_pattern(pattern: str) -> str | None:
    """The pattern rewritten for RE2 with the same meaning for ``search`` (``$`` as Python's end or before a final
    newline), or None when it uses something whose meaning differs or RE2 lacks (then ``re`` is used)."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 >= len(pattern):
                return None
            nxt = pattern[i + 1]
            if nxt in _UNICODE_CLASSES or nxt.isdigit() or nxt in "AZ":
                return None  # Unicode classes, backreferences, Python-only anchors
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
            elif c == "[" and pattern[i + 1:i + 2] == ":":
                return None  # POSIX classes are literal text in re
            out.append(c)
        elif c == "[":
            in_class = True
            out.append(c)
            if pattern[i + 1:i + 2] == "^":
                out.append("^")
                i += 1
            if pattern[i + 1:i + 2] == "]":  # a leading ] is literal in both
                out.append("]")
                i += 1
        elif c == "(" and pattern[i + 1:i + 2] == "?" and pattern[i + 2:i + 3] != ":":
            return None  # flags, lookarounds, named groups: keep re's own reading
        elif c == "$":
            out.append(r"(?:\n?\z)")
        elif c == "{":
            repeat = re.match(r"\{(\d*)(,\d*)?\}", pattern[i:])
            if repeat is None or (not repeat.group(1) and repeat.group(2) is None):
                return None  # a literal brace in re, an error or a repeat in RE2
            out.append("{" + (repeat.group(1) or "0") + (repeat.group(2) or "") + "}")  # re reads {,n} as {0,n}
            i += len(repeat.group(0))
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def compile_search(pattern: str, limit: float) -> tuple[str, Any]:
    """("re2", compiled) when RE2 can run the pattern with re's meaning, else ("re", a killable searcher)."""
    rewritten = re2_pattern(pattern)
    if rewritten is not None:
        try:
            import re2

            options = re2.Options()
            options.log_errors = False
            return "re2", re2.compile(rewritten, options=options)
        except Exception:  # RE2 refuses it (its own limits): re's reading, under the limit
            pass
    return "re", KillableSearch(pattern, limit)


def _serve(pattern: str, conn: Any) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to report; this ends with its pipe
    compiled = re.compile(pattern)
    conn.send(True)  # ready: the start-up does not count against the first document's limit
    while True:
        try:
            text = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        conn.send(compiled.search(text) is not None)


class _Found:
    """What ``search`` returns for a match (RegexFilter only tests it for truth)."""

    def __bool__(self) -> bool:
        return True


class KillableSearch:
    """``re.search`` of one pattern in a helper process, killed and restarted when a document passes the limit
    (started ahead, so that its start-up never counts against a document)."""

    def __init__(self, pattern: str, limit: float) -> None:
        self.pattern = pattern
        self.limit = limit
        self._process: Any = None
        self._conn: Any = None
        self._start()

    def __getstate__(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "limit": self.limit, "_process": None, "_conn": None}

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(self.pattern, child), daemon=True)
        with children_skip_main():
            self._process.start()
        self._conn = parent
        parent.recv()

    def search(self, text: str) -> _Found | None:
        """A truthy object if the pattern occurs in ``text``, None if not; StageTimeout past the limit."""
        if self._process is None:
            self._start()
        self._conn.send(text)
        if not self._conn.poll(self.limit):
            self.close()
            self._start()  # ready for the next document before this one is reported
            raise StageTimeout(f"regex {self.pattern!r} ran past {self.limit:g} s")
        return _Found() if self._conn.recv() else None

    def close(self) -> None:
        """Stop the helper process."""
        if self._process is not None:
            self._process.kill()
            self._process.join()
            self._process = None
            self._conn = None
