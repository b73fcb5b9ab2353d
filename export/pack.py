"""`outpost pack`: a verified bundle -> one tar archive for `outpost install` (temp file + rename)."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from runtime.bundle import open_bundle
from runtime.files import fsync_file
from runtime.install import ROOT_NAME
from runtime.verify import verify_on_open


def pack(bundle: Path, archive: Path, trusted: list[Path] = ()) -> int:
    """Verify every file's hash, then write the archive. Returns its size in bytes."""
    b = open_bundle(bundle)
    verify_on_open(b.path, b.manifest, trusted, always_hash=True)
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(f".{archive.name}.tmp-{os.getpid()}")
    try:
        with tarfile.open(tmp, "w") as tar:
            for f in sorted(b.path.rglob("*")):
                if f.is_file() and not f.is_symlink():
                    rel = f.relative_to(b.path).as_posix()
                    tar.add(f, arcname=f"{ROOT_NAME}/{rel}", recursive=False)
        fsync_file(tmp)
        os.replace(tmp, archive)
    finally:
        tmp.unlink(missing_ok=True)
    return archive.stat().st_size
