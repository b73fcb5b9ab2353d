"""Progress on stderr: one line per step, counters that update in place on a terminal."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

_START = time.perf_counter()
_LOCK = threading.Lock()
quiet = False


def line(text: str) -> None:
    """One whole line on stderr: threads that log at once never share a line (print() writes
    the text and its newline separately, so two threads could write "A", "B", "\n", "\n")."""
    with _LOCK:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def log(message: str) -> None:
    if not quiet:
        line(f"[{time.perf_counter() - _START:6.1f}s] {message}")


def counter(label: str, every: float = 5.0) -> Callable[[int, int], None]:
    """Return progress(done, total): in place on a terminal; otherwise (a log, a pipe) a line
    for the first item, at each quarter and whenever `every` seconds have passed since the
    last line, so a slow run shows it is alive."""
    tty = sys.stderr.isatty()
    shown = {-1}
    last = [time.perf_counter()]

    def progress(done: int, total: int) -> None:
        if quiet or total <= 0:
            return
        if tty:
            end = "\n" if done >= total else ""
            print(f"\r{label}: {done}/{total}", end=end, file=sys.stderr, flush=True)
            return
        quarter, now = 4 * done // total, time.perf_counter()
        if quarter not in shown or done == 1 or now - last[0] >= every:
            shown.add(quarter)
            last[0] = now
            log(f"{label}: {done}/{total}")

    return progress


def rate(
    label: str, total: int, extra: str | None = None, every: float = 5.0
) -> Callable[..., None]:
    """Return progress(done, added=0) for long work: every `every` seconds (and at the end) a
    line with the count, the rate per second, `extra` items counted alongside (e.g. chunks per
    document) and an estimate of the time left."""
    start = time.perf_counter()
    state = {"last": start, "extra": 0}

    def progress(done: int, added: int = 0) -> None:
        state["extra"] += added
        now = time.perf_counter()
        if quiet or (now - state["last"] < every and done < total):
            return
        state["last"] = now
        elapsed = max(now - start, 1e-9)
        text = f"{label}: {done}/{total} ({done / elapsed:.1f}/s"
        if extra:
            text += f"; {state['extra']} {extra}, {state['extra'] / elapsed:.1f}/s"
        left = (total - done) * elapsed / done if done else 0.0
        log(text + (f"), about {left:.0f} s left" if done < total else f") in {elapsed:.1f} s"))

    return progress
