"""Install archives made by `outpost pack` on a device: checks before anything is written,
verification before activation, an atomic `current` switch, rollback, and pruning.

A bundles folder on a device:
    releases/<content-id>/     one verified bundle per content id (sha256 of its bundle.json);
                               `<content-id>.N` when a damaged copy of the same release was
                               repaired by installing it again
    current -> releases/...    what `outpost ask BUNDLES_DIR` uses
    previous -> releases/...   what `outpost rollback` returns to
    .switch.json               while `current` and `previous` change: where both end up
    .lock                      held by the install or rollback running now

Before anything is written, the archive's bundle.json (and, with trusted keys, its signature) is
read and every member is checked against it: listed, and of the listed size. Metadata headers
(PAX, GNU long names) are bounded from their 512-byte header block before tarfile reads them
(`BoundedTarInfo`). A release already here that verifies is "already installed": nothing is
extracted, so no space is needed; otherwise the free space is checked. Files are hashed as they are written. Every later step is a rename or a symlink
replace (atomic on POSIX file systems) with fsync of the folder: `current` always points at a
complete, verified bundle. The two links change under a journal (`.switch.json`, written before
and removed after), which the next install or rollback completes, so a kill between the two never
leaves them on the same release. Half-extracted archives (`.incoming-*`) and copies on their way
out (`.trash-*`) are removed by the next run. Rollback verifies `previous` (hashes, and its
signature with trusted keys) before it moves anything.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from outpost.runtime.bundle.manifest import MANIFEST, Manifest
from outpost.runtime.bundle.open import MAX_MANIFEST_BYTES, SIGNATURE, open_pinned
from outpost.runtime.bundle.verify import (
    MAX_KEY_BYTES,
    load_public_keys,
    open_verified,
    problems_of,
    signature_problem,
)
from outpost.runtime.config import DEFAULT_KEEP  # `install --keep`'s default, declared there
from outpost.runtime.errors import BundleError, InputError, OutpostError, one_line
from outpost.runtime.files import BLOCK, fsync_dir, write_atomic

if TYPE_CHECKING:
    from nacl.signing import VerifyKey

ROOT_NAME = "bundle"  # every archive member lives under bundle/
JOURNAL = ".switch.json"
LOCK = ".lock"


@dataclass
class Limits:
    max_total_bytes: int = 16 * 2**30
    max_file_bytes: int = 8 * 2**30
    max_files: int = 10_000


# Metadata headers: tarfile reads their data whole, into memory, while it iterates (a 389 KB
# gzip archive can hold a 400 MB PAX header). `outpost pack` writes at most a small PAX header
# per member (a long or non-ASCII name); these bounds are checked from each 512-byte header
# block, before tarfile reads what follows it.
MAX_METADATA_BYTES = 64 * 1024  # one PAX or GNU long-name/long-link header
MAX_METADATA_RUN = 8  # metadata headers in a row before a member (tarfile recursed per header)
METADATA_KINDS = {
    tarfile.XHDTYPE: "PAX",
    tarfile.SOLARIS_XHDTYPE: "PAX",
    tarfile.XGLTYPE: "global PAX",
    tarfile.GNUTYPE_LONGNAME: "GNU long-name",
    tarfile.GNUTYPE_LONGLINK: "GNU long-link",
}


class BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo whose metadata headers are bounded before tarfile reads them: each at most
    MAX_METADATA_BYTES, at most MAX_METADATA_RUN in a row, global PAX headers at most
    MAX_METADATA_BYTES in all (tarfile keeps them for the whole archive); sparse members (which
    `outpost pack` never writes) refused. Pass it as `tarfile.open(..., tarinfo=BoundedTarInfo)`."""

    # tarfile's private parsing hooks (not in typeshed); `tar` carries the counters below.
    def _proc_member(self, tar: Any) -> tarfile.TarInfo:
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise BundleError(
                f"archive entry at byte {self.offset} is a sparse file; only plain files are "
                "allowed (not an `outpost pack` archive)"
            )
        kind = METADATA_KINDS.get(self.type)
        if kind is None:
            return super()._proc_member(tar)  # type: ignore[misc]
        where = f"archive header at byte {self.offset}"
        if self.size > MAX_METADATA_BYTES:
            raise BundleError(
                f"{where} is a {kind} header of {self.size} bytes, over the "
                f"{MAX_METADATA_BYTES // 1024} KiB a header may have; refusing the archive"
            )
        run = getattr(tar, "_outpost_metadata_run", 0) + 1
        if run > MAX_METADATA_RUN:
            raise BundleError(
                f"{where}: more than {MAX_METADATA_RUN} metadata headers in a row; refusing the "
                "archive"
            )
        if self.type == tarfile.XGLTYPE:
            total = getattr(tar, "_outpost_global_bytes", 0) + self.size
            if total > MAX_METADATA_BYTES:
                raise BundleError(
                    f"{where}: global PAX headers of more than {MAX_METADATA_BYTES // 1024} KiB "
                    "in all; refusing the archive"
                )
            tar._outpost_global_bytes = total
        tar._outpost_metadata_run = run  # each header reads the next one inside this call
        try:
            return super()._proc_member(tar)  # type: ignore[misc]
        finally:
            tar._outpost_metadata_run = run - 1

    def _sparse(self, member: tarfile.TarInfo, *_: object) -> None:
        # A PAX header naming a GNU sparse map: tarfile would read the map (1.0: from the
        # member's data, as long as it says) into memory. `outpost pack` never writes one.
        raise BundleError(
            f"archive entry {member.name!r} is a sparse file (a GNU sparse map in its PAX header); "
            "only plain files are allowed (not an `outpost pack` archive)"
        )

    _proc_gnusparse_00 = _proc_gnusparse_01 = _proc_gnusparse_10 = _sparse


def _safe_member(m: tarfile.TarInfo) -> None:
    path = PurePosixPath(m.name)
    if path.is_absolute() or m.name.startswith(("/", "\\")) or ".." in path.parts:
        raise BundleError(
            f"archive entry {m.name!r} points outside the bundle; refusing the archive"
        )
    if not path.parts or path.parts[0] != ROOT_NAME:
        raise BundleError(
            f"archive entry {m.name!r} is not under {ROOT_NAME}/; not an `outpost pack` archive"
        )
    if not (m.isfile() or m.isdir()):
        kind = "link" if (m.issym() or m.islnk()) else "device or special file"
        raise BundleError(f"archive entry {m.name!r} is a {kind}; only plain files are allowed")


def _safe_members(
    tar: tarfile.TarFile,
    limits: Limits,
    check: Callable[[tarfile.TarInfo], None] | None = None,
) -> list[tarfile.TarInfo]:
    """Every member's header checked as it is read (data is skipped, nothing is written):
    inside bundle/, a plain file or folder, within the limits, and `check(member)`."""
    members = []
    total = 0
    for m in tar:
        members.append(m)
        if len(members) > limits.max_files:
            raise BundleError(f"archive holds more than {limits.max_files} entries; refusing it")
        _safe_member(m)
        if m.size > limits.max_file_bytes:
            raise BundleError(
                f"archive entry {m.name!r} is {m.size} bytes, over the per-file limit"
            )
        total += m.size
        if total > limits.max_total_bytes:
            raise BundleError("archive unpacks to more than the size limit; refusing it")
        if check is not None:
            check(m)
    return members


def _read_member(tar: tarfile.TarFile, m: tarfile.TarInfo, limit: int) -> bytes:
    if m.size > limit:
        raise BundleError(f"archive entry {m.name!r} is {m.size} bytes; too large for its kind")
    data = tar.extractfile(m)
    assert data is not None  # a plain file (_safe_member)
    return data.read(limit + 1)


class _Head:
    """bundle.json (and bundle.sig) read from the archive as soon as they come (`outpost pack`
    puts them first): every later member is checked against them before its data is read."""

    def __init__(self, tar: tarfile.TarFile, archive: Path, keys: dict[str, VerifyKey] | None):
        self.tar, self.archive, self.keys = tar, archive, keys
        self.raw: bytes | None = None
        self.sig: bytes | None = None
        self.manifest: Manifest | None = None
        self.seen: dict[str, tarfile.TarInfo] = {}

    def __call__(self, m: tarfile.TarInfo) -> None:
        if m.isdir():
            return
        rel = m.name[len(ROOT_NAME) + 1 :]
        if rel == MANIFEST:
            if self.raw is not None:
                raise BundleError(f"archive entry {m.name!r} appears twice; refusing the archive")
            self.raw = _read_member(self.tar, m, MAX_MANIFEST_BYTES)
            self.manifest = Manifest.from_json(self.raw, f"{self.archive}:{m.name}")
            for earlier in list(self.seen.values()):
                self._listed(earlier)
            self._signed()
        elif rel == SIGNATURE:
            self.sig = _read_member(self.tar, m, MAX_KEY_BYTES)
            self._signed()
        else:
            if rel in self.seen:
                raise BundleError(f"archive entry {m.name!r} appears twice; refusing the archive")
            self.seen[rel] = m
            if self.manifest is not None:
                self._listed(m)

    def _signed(self) -> None:
        """With trusted keys, as soon as both are read: the signature must cover bundle.json."""
        if self.keys is None or self.raw is None or self.sig is None:
            return
        if (p := signature_problem(self.sig, self.raw, self.keys)) is not None:
            raise BundleError(f"{self.archive} failed verification: {p}; nothing was installed")

    def _listed(self, m: tarfile.TarInfo) -> None:
        assert self.manifest is not None  # read before any member is listed against it
        rel, listed = m.name[len(ROOT_NAME) + 1 :], self.manifest.files
        if rel not in listed:
            raise BundleError(
                f"archive entry {m.name!r} is not listed in its {MANIFEST}; refusing the archive"
            )
        if m.size != listed[rel].size:
            raise BundleError(
                f"archive entry {m.name!r} is {m.size} bytes, {MANIFEST} says {listed[rel].size}; "
                "refusing the archive"
            )

    def files(self) -> list[tarfile.TarInfo]:
        """After the last member: bundle.json present, signed when asked, every file present."""
        if self.manifest is None:
            raise BundleError(
                f"{self.archive} holds no {ROOT_NAME}/{MANIFEST}; not an `outpost pack` archive"
            )
        assert self.raw is not None  # read with the manifest
        if self.keys is not None and self.sig is None:
            p = signature_problem(None, self.raw, self.keys)
            raise BundleError(f"{self.archive} failed verification: {p}; nothing was installed")
        if missing := sorted(set(self.manifest.files) - set(self.seen)):
            raise BundleError(
                f"{self.archive} lacks {', '.join(missing[:3])}, listed in its {MANIFEST}"
            )
        return [self.seen[rel] for rel in sorted(self.seen)]


def _point(link: Path, target: str) -> None:
    """Atomically make `link` a symlink to `target` (relative)."""
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)
    fsync_dir(link.parent)


def _write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data))


def _switch(bundles: Path, current: str, previous: str | None) -> None:
    """Point `current` and `previous` under the journal: both change, or the next run finishes."""
    journal = bundles / JOURNAL
    _write_json(journal, {"current": current, "previous": previous})
    _apply(bundles, current, previous)
    journal.unlink()
    fsync_dir(bundles)


def _apply(bundles: Path, current: str, previous: str | None) -> None:
    if previous:
        _point(bundles / "previous", previous)
    _point(bundles / "current", current)


def _link(bundles: Path, name: str) -> str | None:
    try:
        return os.readlink(bundles / name)
    except OSError:
        return None


def _recover(bundles: Path) -> None:
    """Finish a switch a kill interrupted; remove what interrupted runs left behind."""
    journal = bundles / JOURNAL
    try:
        record = json.loads(journal.read_text())
        current, previous = record["current"], record.get("previous")
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError):
        journal.unlink(missing_ok=True)
    else:
        if isinstance(current, str) and (bundles / current / MANIFEST).is_file():
            ok_previous = isinstance(previous, str) and (bundles / previous / MANIFEST).is_file()
            _apply(bundles, current, previous if ok_previous else None)
        journal.unlink(missing_ok=True)
    for stale in [*bundles.glob(".incoming-*"), *bundles.glob(".trash-*")]:
        shutil.rmtree(stale, ignore_errors=True)
    for stale in [*bundles.glob(".*.tmp-*"), *(bundles / "releases").glob(".*.tmp-*")]:
        stale.unlink(missing_ok=True)


def _trash(bundles: Path, folder: Path) -> None:
    """Remove a release folder: renamed out of releases/ first, so a kill leaves no half."""
    away = bundles / f".trash-{os.getpid()}-{folder.name}"
    os.replace(folder, away)
    fsync_dir(folder.parent)
    shutil.rmtree(away, ignore_errors=True)


def prune(bundles: Path, keep: int) -> list[str]:
    """Remove releases beyond the `keep` newest; `current` and `previous` are always kept."""
    releases = bundles / "releases"
    linked = {
        PurePosixPath(t).name for t in (_link(bundles, "current"), _link(bundles, "previous")) if t
    }
    folders = sorted(
        (p for p in releases.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    kept = len(linked & {p.name for p in folders})
    removed = []
    for p in folders:
        if p.name in linked:
            continue
        if kept < keep:
            kept += 1
            continue
        _trash(bundles, p)
        removed.append(p.name)
    return removed


@contextmanager
def locked(bundles: Path) -> Iterator[None]:
    """One install or rollback at a time on a bundles folder; the next run finishes a switch."""
    bundles.mkdir(parents=True, exist_ok=True)
    fd = os.open(bundles / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BundleError(
                f"another install or rollback is running on {bundles}; try again when it ends"
            ) from None
        _recover(bundles)
        yield
    finally:
        os.close(fd)


def _disk_error(e: OSError, bundles: Path) -> OutpostError:
    if e.errno == errno.ENOSPC:
        return InputError(f"--bundles {bundles}: the disk is full; free space and install again")
    if e.errno == errno.EROFS:
        return InputError(
            f"--bundles {bundles}: the file system is read-only; remount it read-write"
        )
    return InputError(
        f"--bundles {bundles}: cannot write there ({e.strerror or e}); choose a writable folder"
    )


class Installed(str):
    """The content id of the release `current` now points at (a str, as before); `already` says
    it was installed before and nothing was extracted."""

    already: bool = False

    def __new__(cls, content_id: str, already: bool = False) -> Installed:
        self = super().__new__(cls, content_id)
        self.already = already
        return self


def install(
    archive: Path,
    bundles: Path,
    trusted: Sequence[Path] = (),
    limits: Limits | None = None,
    keep: int = DEFAULT_KEEP,
) -> Installed:
    """Check, extract, verify, then switch `current` to the new bundle. Returns its content id
    (with `.already` True when that release was installed and verifies: nothing extracted)."""
    if not archive.is_file():
        raise InputError(f"{archive} does not exist; pass a file made by `outpost pack`")
    keys = load_public_keys(list(trusted)) if trusted else None  # no key: an error, not trust off
    try:
        with locked(bundles):
            cid = _install(archive, bundles, trusted, keys, limits or Limits())
            if keep:
                prune(bundles, keep)
            return cid
    except OSError as e:
        raise _disk_error(e, bundles) from None


@contextmanager
def _reading(archive: Path, bundles: Path) -> Iterator[tarfile.TarFile]:
    """The archive open with bounded metadata; its problems as one BundleError line (writing
    problems under --bundles pass through, to be reported as such)."""
    try:
        with tarfile.open(archive, "r:*", tarinfo=BoundedTarInfo) as tar:
            yield tar
    except (tarfile.TarError, EOFError, ValueError, UnicodeError, RecursionError) as e:
        detail = one_line(str(e))[:200]
        raise BundleError(
            f"{archive} is not a readable archive ({detail}); copy it again"
        ) from None
    except OSError as e:
        if e.filename and Path(e.filename).is_relative_to(bundles):
            raise  # writing failed: reported as a --bundles problem
        if e.errno in (errno.ENOSPC, errno.EROFS):
            raise
        detail = one_line(str(e))[:200]
        raise BundleError(
            f"{archive} is not a readable archive ({detail}); copy it again"
        ) from None


def _check_space(head: _Head, bundles: Path) -> None:
    files = head.files()
    assert head.raw is not None
    need = sum(m.size for m in files) + len(head.raw) + (len(head.sig) if head.sig else 0)
    free = shutil.disk_usage(bundles).free
    if need > free:
        raise InputError(
            f"--bundles {bundles}: the bundle needs {need / 1e6:.1f} MB, {free / 1e6:.1f} MB "
            "are free; free space and install again"
        )


def _extract(tar: tarfile.TarFile, head: _Head, incoming: Path, archive: Path) -> None:
    assert head.raw is not None and head.manifest is not None  # head.files() checked them
    root = incoming / ROOT_NAME
    root.mkdir(parents=True)
    (root / MANIFEST).write_bytes(head.raw)
    if head.sig is not None:
        (root / SIGNATURE).write_bytes(head.sig)
    for m in head.files():
        rel = m.name[len(ROOT_NAME) + 1 :]
        _write_member(tar, m, root / rel, head.manifest.files[rel].sha256, archive)


def _write_member(
    tar: tarfile.TarFile, m: tarfile.TarInfo, target: Path, sha256: str, archive: Path
) -> None:
    """Write one member, hashing as it goes; stop at once when the bytes are not the listed ones."""
    target.parent.mkdir(parents=True, exist_ok=True)
    source, digest = tar.extractfile(m), hashlib.sha256()
    assert source is not None  # a plain file (_safe_member)
    with open(target, "wb") as out:
        while block := source.read(BLOCK):
            digest.update(block)
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    if digest.hexdigest() != sha256:
        raise BundleError(f"{archive}: {m.name} does not match its {MANIFEST}; copy it again")
    os.chmod(target, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)  # read-only once written


def _installed(releases: Path, cid: str, trusted: Sequence[Path]) -> tuple[Path | None, list[Path]]:
    """The release of this content id already here that verifies, and the damaged copies."""
    final, damaged = None, []
    for folder in sorted(releases.glob(f"{cid}*")):
        if folder.name.split(".")[0] != cid:
            continue
        if final is None and _verifies(folder, trusted):
            final = folder
        else:
            damaged.append(folder)  # installed earlier, damaged or tampered with since
    return final, damaged


def _install(
    archive: Path,
    bundles: Path,
    trusted: Sequence[Path],
    keys: dict[str, VerifyKey] | None,
    limits: Limits,
) -> Installed:
    releases = bundles / "releases"
    releases.mkdir(parents=True, exist_ok=True)
    incoming = bundles / f".incoming-{os.getpid()}"
    try:
        with _reading(archive, bundles) as tar:
            head = _Head(tar, archive, keys)
            _safe_members(tar, limits, head)
            head.files()  # complete, and signed when trust is asked for
            assert head.raw is not None
            cid = hashlib.sha256(head.raw).hexdigest()
            # Already here and verified: nothing to extract, so no space is needed.
            final, damaged = _installed(releases, cid, trusted)
            already = final is not None
            if not already:
                _check_space(head, bundles)
                _extract(tar, head, incoming, archive)
        if not already:
            root = incoming / ROOT_NAME
            verified = open_verified(root, trusted, always_hash=True, view=False)
            verified.close()
            n = 1  # a new name: a damaged copy stays in place until `current` moves
            while (new := releases / (cid if n == 1 else f"{cid}.{n}")).exists():
                n += 1
            os.replace(root, new)
            fsync_dir(releases)
            final = new
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    assert final is not None  # found installed, or moved into place above
    old = _link(bundles, "current")
    target = f"releases/{final.name}"
    if old != target:
        changed = old is not None and PurePosixPath(old).name.split(".")[0] != cid
        _switch(bundles, target, old if changed else _link(bundles, "previous"))
    linked = {_link(bundles, "current"), _link(bundles, "previous")}
    for folder in damaged:  # only now: `current` no longer needs them
        if f"releases/{folder.name}" not in linked:
            _trash(bundles, folder)
    return Installed(cid, already)


def _problems(path: Path, keys: dict[str, VerifyKey] | None) -> str | None:
    """What is wrong with a release folder (hashes, binding, and its signature when `keys`),
    in one line; None when it verifies."""
    try:
        bundle = open_pinned(path, view=False)
    except OutpostError as e:
        return one_line(str(e))
    try:
        problems = problems_of(bundle, keys, hashes=True, unexpected=True)
    finally:
        bundle.close()
    return "; ".join(map(str, problems)) or None


def _verifies(path: Path, trusted: Sequence[Path]) -> bool:
    if not path.is_dir():
        return False
    try:
        open_verified(path, trusted, always_hash=True, view=False).close()
    except OutpostError:
        return False
    return True


def rollback(bundles: Path, trusted: Sequence[Path] = ()) -> str:
    """Point `current` back at `previous`, once `previous` verifies (every file's hash, and its
    signature when `trusted` keys are given); a damaged one is refused and nothing moves."""
    keys = load_public_keys(list(trusted)) if trusted else None  # no key: an error, not trust off
    if not (bundles / "previous").is_symlink():
        raise BundleError(f"{bundles} has no previous bundle to roll back to")
    try:
        with locked(bundles):
            old_current, target = _link(bundles, "current"), _link(bundles, "previous")
            if target is None:  # removed by another run between the check above and the lock
                raise BundleError(f"{bundles} has no previous bundle to roll back to")
            if not (bundles / target / MANIFEST).is_file():
                raise BundleError(f"the previous bundle {target} is gone; install a bundle instead")
            if old_current == target:
                raise BundleError(
                    f"current and previous both point at {target}; install the other bundle again"
                )
            if problem := _problems(bundles / target, keys):
                raise BundleError(
                    f"the previous bundle {target} failed verification: {problem}; nothing was "
                    f"changed (current is still {old_current}); install that release again to "
                    "repair it"
                )
            _switch(bundles, target, old_current)
    except OSError as e:
        raise _disk_error(e, bundles) from None
    return PurePosixPath(target).name


def resolve(path: str | Path) -> Path:
    """A bundle folder, or a bundles folder whose `current` points at one."""
    p = Path(path)
    if not (p / MANIFEST).is_file() and (p / "current").is_symlink():
        return (p / "current").resolve()
    return p
