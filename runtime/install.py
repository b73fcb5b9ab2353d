"""Install archives made by `outpost pack` on a device: safe extraction, verification before
activation, an atomic `current` switch, and rollback.

A bundles folder on a device:
    releases/<content-id>/   one verified bundle per content id (sha256 of its bundle.json)
    current -> releases/...  what `outpost ask BUNDLES_DIR` uses
    previous -> releases/... what `outpost rollback` returns to

Every step is a rename or a symlink replace, each atomic on POSIX file systems, with fsync of
the folder around it: a power cut at any point leaves `current` pointing at a complete,
verified bundle (the old one or the new one). Half-extracted archives live in `.incoming-*`
folders that the next install removes.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from runtime.bundle import open_bundle
from runtime.errors import BundleError, InputError, OutpostError
from runtime.files import fsync_dir, remove_stale
from runtime.manifest import MANIFEST
from runtime.verify import content_id, verify_on_open

ROOT_NAME = "bundle"  # every archive member lives under bundle/


@dataclass
class Limits:
    max_total_bytes: int = 16 * 2**30
    max_file_bytes: int = 8 * 2**30
    max_files: int = 10_000


def _safe_members(tar: tarfile.TarFile, limits: Limits) -> list[tarfile.TarInfo]:
    members = tar.getmembers()
    if len(members) > limits.max_files:
        raise BundleError(
            f"archive holds {len(members)} entries, over the limit of {limits.max_files}"
        )
    total = 0
    for m in members:
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
        if m.size > limits.max_file_bytes:
            raise BundleError(
                f"archive entry {m.name!r} is {m.size} bytes, over the per-file limit"
            )
        total += m.size
        if total > limits.max_total_bytes:
            raise BundleError("archive unpacks to more than the size limit; refusing it")
    return members


def _point(link: Path, target: str) -> None:
    """Atomically make `link` a symlink to `target` (relative)."""
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)
    fsync_dir(link.parent)


def install(
    archive: Path, bundles: Path, trusted: list[Path] = (), limits: Limits | None = None
) -> str:
    """Extract, verify, then switch `current` to the new bundle. Returns its content id."""
    if not archive.is_file():
        raise InputError(f"{archive} does not exist; pass a file made by `outpost pack`")
    try:
        return _install(archive, bundles, trusted, limits or Limits())
    except OSError as e:
        raise InputError(
            f"--bundles {bundles}: cannot write there ({e.strerror or e}); choose a writable folder"
        ) from None


def _install(archive: Path, bundles: Path, trusted: list[Path], limits: Limits) -> str:
    releases = bundles / "releases"
    releases.mkdir(parents=True, exist_ok=True)
    remove_stale(bundles, ".incoming-")  # left by an interrupted install (not a running one)
    incoming = bundles / f".incoming-{os.getpid()}"
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = _safe_members(tar, limits)
                for m in members:
                    target = incoming / m.name
                    if m.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    source = tar.extractfile(m)
                    with open(target, "wb") as out:
                        shutil.copyfileobj(source, out, 1 << 20)
                        out.flush()
                        os.fsync(out.fileno())
                    os.chmod(target, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
        except (tarfile.TarError, EOFError, ValueError, UnicodeError) as e:
            raise BundleError(f"{archive} is not a readable archive ({e}); copy it again") from None
        except OSError as e:
            if e.filename and Path(e.filename).is_relative_to(bundles):
                raise  # writing failed: reported as a --bundles problem
            raise BundleError(f"{archive} is not a readable archive ({e}); copy it again") from None
        root = incoming / ROOT_NAME
        if not (root / MANIFEST).is_file():
            raise BundleError(
                f"{archive} holds no {ROOT_NAME}/{MANIFEST}; not an `outpost pack` archive"
            )
        b = open_bundle(root)
        verify_on_open(b.path, b.manifest, trusted, always_hash=True)
        cid = content_id(root)
        final = releases / cid
        if final.exists() and not _verifies(final, trusted):
            # The same release installed earlier and damaged or tampered with since: replace it.
            broken = bundles / f".broken-{os.getpid()}"
            os.replace(final, broken)
            shutil.rmtree(broken, ignore_errors=True)
        if not final.exists():
            os.replace(root, final)
            fsync_dir(releases)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    current = bundles / "current"
    if current.is_symlink() and os.readlink(current) != f"releases/{cid}":
        _point(bundles / "previous", os.readlink(current))
    _point(current, f"releases/{cid}")
    return cid


def _verifies(path: Path, trusted: list[Path]) -> bool:
    try:
        b = open_bundle(path)
        verify_on_open(b.path, b.manifest, trusted, always_hash=True)
    except OutpostError:
        return False
    return True


def rollback(bundles: Path) -> str:
    current, previous = bundles / "current", bundles / "previous"
    if not previous.is_symlink():
        raise BundleError(f"{bundles} has no previous bundle to roll back to")
    old_current = os.readlink(current) if current.is_symlink() else None
    target = os.readlink(previous)
    if not (bundles / target / MANIFEST).is_file():
        raise BundleError(f"the previous bundle {target} is gone; install a bundle instead")
    _point(current, target)
    if old_current:
        _point(previous, old_current)
    return PurePosixPath(target).name


def resolve(path: str | Path) -> Path:
    """A bundle folder, or a bundles folder whose `current` points at one."""
    p = Path(path)
    if not (p / MANIFEST).is_file() and (p / "current").is_symlink():
        return (p / "current").resolve()
    return p
