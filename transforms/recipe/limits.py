"""Per-document time limits for recipe stages, and user regular expressions on a linear-time engine.

- ``StageClock.call`` runs one stage on one document; a watchdog thread stops Python-level work that runs past the
  limit by raising ``StageTimeout`` in the stage's thread (``PyThreadState_SetAsyncExc``), and the chain rejects the
  document as ``<stage>/timeout``. Work inside one long C call cannot be stopped this way, so:
- a ``regex`` stage's pattern runs on RE2 (``google-re2``: linear time, no catastrophic backtracking) whenever it
  means the same there as in Python's ``re``; otherwise (backreferences, lookarounds, Unicode classes, flags) it runs
  on ``re`` in a helper process that is killed and restarted when one document passes the limit (``KillableCall``,
  which the ``extract`` stage's HTML parsers use too).
"""

from __future__ import annotations

import ctypes
import functools
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


def regex_searcher(pattern: str) -> Callable[[str], bool]:
    """Whether ``pattern`` occurs in a text (``re``): the regex helper process's function."""
    compiled = re.compile(pattern)
    return lambda text: compiled.search(text) is not None


class _Found:
    """What ``search`` returns for a match (RegexFilter only tests it for truth)."""

    def __bool__(self) -> bool:
        return True


class KillableSearch:
    """``re.search`` of one pattern in a helper process, killed and restarted when a document passes the limit."""

    def __init__(self, pattern: str, limit: float) -> None:
        self.pattern = pattern
        self._call = KillableCall(functools.partial(regex_searcher, pattern), limit, f"regex {pattern!r}")

    def search(self, text: str) -> _Found | None:
        """A truthy object if the pattern occurs in ``text``, None if not; StageTimeout past the limit."""
        return _Found() if self._call(text) else None

    def close(self) -> None:
        """Stop the helper process."""
        self._call.close()


# ------------------------------------------------------------------------------------------------ helper processes


class HelperError(Exception):
    """The function in a helper process raised, or the process died (its message says which)."""


def _serve(build: Callable[[], Callable[[Any], Any]], conn: Any) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to report; this ends with its pipe
    try:
        fn = build()
    except Exception as exc:  # reported to the parent, which raises it where the stage is built
        conn.send(f"{type(exc).__name__}: {exc}")
        return
    conn.send(True)  # ready: the start-up does not count against the first call's limit
    while True:
        try:
            arg = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        for one in arg.items if isinstance(arg, Many) else (arg,):  # a Many: one reply per item, in order
            try:
                conn.send((True, fn(one)))
            except Exception as exc:
                conn.send((False, f"{type(exc).__name__}: {exc}"))


class Many:
    """Several arguments sent to a helper process at once (``KillableCall.map``)."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items


class KillableCall:
    """A one-argument function, ``build()``'s result, called in a helper process that is killed and restarted when
    a call passes the limit: the only way to stop work inside one long C call (a regular expression, an HTML
    parser). Started ahead, so that its start-up never counts against a call; ``build`` must pickle (a module-level
    function or a ``functools.partial`` of one), the function it returns need not."""

    def __init__(self, build: Callable[[], Callable[[Any], Any]], limit: float, what: str) -> None:
        self.build = build
        self.limit = limit
        self.what = what  # names the work in a timeout's message
        self._process: Any = None
        self._conn: Any = None
        self._spare: tuple[Any, Any] | None = None  # after a restart: the next helper, starting meanwhile
        self._start()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_process": None, "_conn": None, "_spare": None}

    def _launch(self) -> tuple[Any, Any]:
        """A new helper process and the parent's end of its pipe (it says it is ready when it is)."""
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(target=_serve, args=(self.build, child), daemon=True)
        with children_skip_main():
            process.start()
        child.close()  # the child holds its end now: its death reads as the end of the pipe, not as silence
        return process, parent

    def _start(self) -> None:
        """Take the spare helper (or start one) and wait until it is ready."""
        self._process, parent = self._spare or self._launch()
        self._spare = None
        self._conn = parent
        try:
            ready = parent.recv()
        except EOFError:
            ready = "the helper process died while starting"
        if ready is not True:
            self._stop()
            raise HelperError(f"{self.what}: {ready}")

    def _restart(self) -> None:
        """A new helper for the next call; the one after it starts now, so that a run of pathological pages does
        not wait for an interpreter's start-up each time (a spawned helper imports its extractor afresh)."""
        self._stop()
        self._start()
        self._spare = self._launch()

    def __call__(self, arg: Any) -> Any:
        """The function's result on ``arg``; StageTimeout past the limit, HelperError if it raised or the process
        died (killed by the system, a crash in C): a new process takes the next call."""
        if self._process is None:
            self._start()
        try:
            self._conn.send(arg)
            answered = self._conn.poll(self.limit)
            reply = self._conn.recv() if answered else None
        except (EOFError, OSError):  # the pipe ended: the process is gone
            self._restart()
            raise HelperError(f"{self.what}: the helper process died") from None
        if not answered:
            self._restart()  # ready for the next call before this one is reported
            raise StageTimeout(f"{self.what} ran past {self.limit:g} s")
        ok, result = reply
        if not ok:
            raise HelperError(result)
        return result

    def map(self, args: list[Any]) -> list[Any]:
        """Each argument's result as ``__call__`` gives it, or the StageTimeout / HelperError it raised (returned,
        not raised), sent at once: the helper answers one after another without waiting for the parent, and each
        answer must come within the limit of the one before it. After a timeout or a death the rest goes to the
        new helper."""
        out: list[Any] = []
        while len(out) < len(args):
            pending = args[len(out):]
            if self._process is None:
                self._start()
            try:
                self._conn.send(Many(pending))
            except (EOFError, OSError):
                self._restart()
                out.append(HelperError(f"{self.what}: the helper process died"))
                continue
            for _ in pending:
                try:
                    answered = self._conn.poll(self.limit)
                    reply = self._conn.recv() if answered else None
                except (EOFError, OSError):
                    self._restart()
                    out.append(HelperError(f"{self.what}: the helper process died"))
                    break
                if not answered:
                    self._restart()
                    out.append(StageTimeout(f"{self.what} ran past {self.limit:g} s"))
                    break
                ok, result = reply
                out.append(result if ok else HelperError(result))
        return out

    def close(self) -> None:
        """Stop the helper process (and the spare one)."""
        self._stop()
        if self._spare is not None:
            self._spare[0].kill()
            self._spare[0].join()
            self._spare = None

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join()
            self._process = None
            self._conn = None
