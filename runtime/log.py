"""Progress on stderr: one line per step, counters that update in place on a terminal."""

from __future__ import annotations

import sys
import threading
import time

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


def counter(label: str):
    """Return progress(done, total): in place on a terminal, every 25% otherwise."""
    tty = sys.stderr.isatty()
    shown = {-1}

    def progress(done: int, total: int) -> None:
        if quiet or total <= 0:
            return
        if tty:
            end = "\n" if done >= total else ""
            print(f"\r{label}: {done}/{total}", end=end, file=sys.stderr, flush=True)
            return
        quarter = 4 * done // total
        if quarter not in shown:
            shown.add(quarter)
            log(f"{label}: {done}/{total}")

    return progress
