"""File rules written once: content hashes, durable renames, and JSON-lines reading.

Every write that must survive a power cut goes to a temporary path, is fsynced and renamed;
the folder holding it is fsynced after the rename. JSON-lines errors name `file:line`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from outpost.runtime.errors import InputError

BLOCK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def kind_of(mode: int) -> str:
    """What a file system entry is, in words, from its st_mode ("a FIFO (named pipe)", ...)."""
    for test, words in (
        (stat.S_ISREG, "a plain file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a link"),
    ):
        if test(mode):
            return words
    return "an unknown kind of entry"


def open_plain(path: Path, follow: bool = True) -> BinaryIO:
    """`path` opened for reading, only when it is a plain file: the open never waits (O_NONBLOCK:
    a FIFO's open does not wait for a writer) and what was opened is checked with fstat, so a
    FIFO, socket or device put in its place is never read. With `follow=False` not a link either.
    OSError when it cannot be opened; ValueError saying what it is otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"{kind_of(mode)}, not a plain file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_plain(path: Path, limit: int, follow: bool = True) -> bytes:
    """A small file's bytes, only when it is a plain file of at most `limit` bytes (a FIFO or a
    device is never read, so it cannot hang or flood us); with `follow=False` not a link either.
    OSError when it cannot be opened; ValueError saying what it is otherwise."""
    with open_plain(path, follow) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise ValueError(f"{size} bytes, over the {limit} a file of its kind may have")
        return f.read(limit + 1)


def sha256_files(paths: Iterable[Path]) -> str:
    """One digest over several files' bytes, in sorted path order (e.g. sharded weights)."""
    digest = hashlib.sha256()
    for p in sorted(paths):
        with open(p, "rb") as f:
            while block := f.read(BLOCK):
                digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def write_atomic(path: Path, data: bytes | str, durable: bool = True) -> None:
    """Replace `path` with `data` all at once: written to a temporary name beside it, fsynced
    (with `durable`), renamed over it, and the folder fsynced. A reader sees the old file or
    the new one, never a part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


@contextmanager
def new_folder(out: Path) -> Iterator[Path]:
    """Build a folder that replaces `out` all at once. Yields a temporary folder beside it
    (leftovers of a killed run are removed first, a running one's are not); when the block
    ends without an error it is renamed into place (an existing `out` moved aside first and
    removed after) and the parent fsynced; on any error it is removed and `out` is untouched."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out.parent, f".{out.name}.tmp-")
    remove_stale(out.parent, f".{out.name}.old-")
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    tmp.mkdir()
    try:
        yield tmp
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
        fsync_dir(out.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def remove_stale(parent: Path, prefix: str) -> list[Path]:
    """Remove `prefix<PID>` folders left by processes that are gone; a live one's is kept."""
    import shutil

    removed = []
    for stale in parent.glob(f"{prefix}*"):
        pid = stale.name[len(prefix) :]
        if pid.isdigit() and (int(pid) == os.getpid() or not pid_alive(int(pid))):
            shutil.rmtree(stale, ignore_errors=True)
            removed.append(stale)
    return removed


def read_jsonl(path: str | Path, what: str = "a JSON-lines file") -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line; InputError naming file:line otherwise."""
    p = Path(path)
    try:
        with open_plain(p) as f:
            text = f.read().decode("utf-8")
    except FileNotFoundError:
        raise InputError(f"{p} does not exist; pass {what}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{p}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except ValueError as e:  # a FIFO, a device, a folder: never read
        raise InputError(f"{p} is {e}; pass {what}") from None
    except OSError as e:
        raise InputError(f"{p} is unreadable ({e.strerror})") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(
                f"{p}:{number}: not valid JSON ({e.msg} at column {e.colno})"
            ) from None
        if not isinstance(item, dict):
            raise InputError(f"{p}:{number}: each line must be a JSON object")
        rows.append((number, item))
    if not rows:
        raise InputError(f"{p} is empty; add one JSON object per line")
    return rows
