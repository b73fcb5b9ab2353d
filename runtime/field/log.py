"""The field log: append-only JSON lines beside the installed bundles, crash-safe and bounded.

- One entry is one line, appended in one `write` to a file opened with O_APPEND and then
  `fsync`ed: a kill -9 or a power cut loses at most the entry being written. A torn last line is
  skipped when read, and the next entry starts on a line of its own.
- The cap (`max_bytes`) is split into SEGMENTS files `field-NNNNNNNN.jsonl`; past it, the oldest
  file goes first and a `dropped` entry counts what went (`total`: since the log began).
- Several writers (a server, `ask --log`) share the folder through `.lock` (flock).
- The folder is 0700 and its files 0600, owned by the user writing: a folder another user owns
  is refused, and no file is followed through a symbolic link.

docs/feedback.md says what an entry holds and how to wipe the log.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from outpost.runtime.errors import InputError

SEGMENTS = 8  # files the cap is split into: the oldest eighth goes at a time
MIN_SEGMENT = 16 * 1024
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
_NAME = re.compile(r"field-(\d{8})\.jsonl")


class FieldLogError(InputError):
    """The log's folder cannot be used (another user's, not a folder, not writable)."""


@dataclass(frozen=True)
class Stats:
    entries: int  # answers and verdicts kept
    bytes: int
    files: int
    dropped: int  # entries removed by rotation since the log began
    torn: int  # lines that are not whole entries (a write cut short)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class FieldLog:
    def __init__(self, folder: str | Path, max_bytes: int = DEFAULT_MAX_BYTES):
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.segment_bytes = max(max_bytes // SEGMENTS, MIN_SEGMENT)

    # --- writing ---------------------------------------------------------------------------

    def append(self, entry: dict) -> None:
        """Write one entry (a dict of JSON values) durably, rotating past the cap."""
        line = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        if len(line) > self.segment_bytes:
            raise ValueError(f"a field-log entry of {len(line)} bytes is over one file's size")
        self.check()
        with self._locked():
            files = self._files()
            current = files[-1] if files else self._path(1)
            if current.exists() and current.stat().st_size + len(line) > self.segment_bytes:
                current = self._path(int(_NAME.fullmatch(current.name)[1]) + 1)  # type: ignore[index]
            try:
                self._write(current, line)
                self._rotate(current)
            except OSError as e:
                raise FieldLogError(
                    f"cannot write the field log in {self.folder} ({e.strerror}); free space or "
                    "give it another folder"
                ) from None

    def _write(self, path: Path, line: bytes) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        created = not path.exists()
        fd = os.open(path, flags, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and _last_byte(path, size) != b"\n":
                line = b"\n" + line  # a torn entry before: this one starts on its own line
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            _sync_folder(self.folder)

    def _rotate(self, current: Path) -> None:
        files = self._files()
        total = sum(p.stat().st_size for p in files)
        if total <= self.max_bytes or len(files) < 2:
            return
        dropped = self._dropped(files)
        while total > self.max_bytes and len(files) > 1:
            oldest = files.pop(0)
            total -= oldest.stat().st_size
            dropped += sum(1 for e in _read(oldest)[0] if e.get("kind") != "dropped")
            oldest.unlink()
        _sync_folder(self.folder)
        record = {"v": 1, "kind": "dropped", "time": now(), "total": dropped}
        self._write(current, (json.dumps(record, separators=(",", ":")) + "\n").encode())

    def _dropped(self, files: list[Path]) -> int:
        """Entries dropped so far: the latest `dropped` entry's total (in the newest files)."""
        for p in reversed(files):
            totals = [e["total"] for e in _read(p)[0] if e.get("kind") == "dropped"]
            if totals:
                return int(totals[-1])
        return 0

    # --- reading ---------------------------------------------------------------------------

    def entries(self) -> Iterator[dict]:
        """Every whole entry, oldest first (`dropped` entries included)."""
        for p in self._files():
            yield from _read(p)[0]

    def stats(self) -> Stats:
        files = self._files()
        kept = torn = 0
        for p in files:
            entries, bad = _read(p)
            kept += sum(1 for e in entries if e.get("kind") != "dropped")
            torn += bad
        size = sum(p.stat().st_size for p in files)
        return Stats(kept, size, len(files), self._dropped(files), torn)

    def wipe(self) -> int:
        """Remove every log file; returns how many there were."""
        if not self.folder.is_dir():
            return 0
        with self._locked():
            files = self._files()
            for p in files:
                p.unlink()
        _sync_folder(self.folder)
        return len(files)

    # --- the folder ------------------------------------------------------------------------

    def _files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        found = [p for p in self.folder.iterdir() if _NAME.fullmatch(p.name)]
        return sorted(found, key=lambda p: p.name)

    def _path(self, n: int) -> Path:
        return self.folder / f"field-{n:08d}.jsonl"

    def check(self) -> None:
        """The folder can be used: made if missing, a real folder of this user's, closed to
        others."""
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = os.lstat(self.folder)
        except OSError as e:
            raise FieldLogError(
                f"cannot make the field log's folder {self.folder} ({e.strerror}); "
                "give --feedback-dir (or --log) a folder this user may write"
            ) from None
        if not stat.S_ISDIR(info.st_mode):
            raise FieldLogError(f"{self.folder} is not a folder; give the field log a folder")
        if info.st_uid != os.geteuid():
            raise FieldLogError(
                f"the field log's folder {self.folder} belongs to uid {info.st_uid}, not to this "
                f"user (uid {os.geteuid()}); give it a folder of this user's"
            )
        if info.st_mode & 0o077:
            os.chmod(self.folder, 0o700)  # questions people typed: only the serving user reads

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.folder / ".lock", flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def folder_for(source: str | Path, given: str | Path | None = None) -> Path:
    """Where the field log of a device serving `source` goes: `given`; else beside the installed
    bundles (BUNDLES/feedback for a bundles folder); else the user's state folder. Refused
    inside a bundle: a signed release stays exactly what was signed."""
    source = Path(source)
    if given is not None:
        folder = Path(given)
    elif (source / "current").is_symlink() and not (source / "bundle.json").exists():
        folder = source / "feedback"
    else:
        state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
        folder = Path(state) / "outpost" / "feedback"
    return outside_bundles(folder)


def outside_bundles(folder: str | Path) -> Path:
    """`folder`, refused (FieldLogError) when it is inside a bundle."""
    folder = Path(folder)
    resolved = folder.resolve()
    for parent in (resolved, *resolved.parents):
        if (parent / "bundle.json").is_file():
            raise FieldLogError(
                f"the field log's folder {folder} is inside the bundle {parent}; a release must "
                "stay what was signed: give --feedback-dir (or --log) a folder outside it"
            )
    return folder


def _read(path: Path) -> tuple[list[dict], int]:
    """The file's whole entries and how many lines were not (torn or foreign)."""
    entries, bad = [], 0
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ELOOP):
            return [], 0
        raise
    with os.fdopen(fd, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                bad += 1  # the last write was cut short
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                bad += raw.strip() != b""
                continue
            if isinstance(entry, dict) and "kind" in entry:
                entries.append(entry)
            else:
                bad += 1
    return entries, bad


def _last_byte(path: Path, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(size - 1)
        return f.read(1)


def _sync_folder(folder: Path) -> None:
    """A new or removed file survives a power cut only once its folder is synced too."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
