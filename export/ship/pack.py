"""`outpost pack`: a verified bundle -> one tar archive for `outpost install` (temp file + rename).

bundle.json and bundle.sig go first, so `install` checks every later member against them; each
file is read from the descriptor that was verified (runtime/bundle/open.py), not opened again by name.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path

from outpost.runtime.bundle.install import ROOT_NAME
from outpost.runtime.bundle.manifest import MANIFEST
from outpost.runtime.bundle.open import SIGNATURE
from outpost.runtime.bundle.verify import open_verified
from outpost.runtime.errors import InputError
from outpost.runtime.files import fsync_file


class _Reader(io.RawIOBase):
    """A pinned file read from its descriptor, from the start."""

    def __init__(self, pinned, rel: str):
        self.pinned, self.rel, self.offset = pinned, rel, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.pinned.read(self.rel, self.offset, len(buffer))
        buffer[: len(data)] = data
        self.offset += len(data)
        return len(data)


def pack(bundle: Path, archive: Path, trusted: Sequence[Path] = ()) -> int:
    """Verify every file's hash, then write the archive. Returns its size in bytes."""
    if archive.absolute().resolve().is_relative_to(bundle.resolve()):
        raise InputError(
            f"-o {archive} is inside the bundle it packs; write the archive somewhere else"
        )
    b = open_verified(bundle, trusted, always_hash=True, view=False)
    assert b.pinned is not None
    try:
        archive.parent.mkdir(parents=True, exist_ok=True)
        tmp = archive.with_name(f".{archive.name}.tmp-{os.getpid()}")
        try:
            with tarfile.open(tmp, "w") as tar:
                head = [(MANIFEST, b.manifest_bytes)]
                sig = b.folder / SIGNATURE
                if sig.is_file() and not sig.is_symlink():
                    head.append((SIGNATURE, sig.read_bytes()))
                for rel, data in head:
                    info = tarfile.TarInfo(f"{ROOT_NAME}/{rel}")
                    info.size, info.mode = len(data), 0o644
                    tar.addfile(info, io.BytesIO(data))
                for rel in sorted(b.manifest.files):
                    info = tarfile.TarInfo(f"{ROOT_NAME}/{rel}")
                    st = b.pinned.stat(rel)
                    info.size, info.mode, info.mtime = st.st_size, 0o644, int(st.st_mtime)
                    tar.addfile(info, io.BufferedReader(_Reader(b.pinned, rel), 1 << 20))
            fsync_file(tmp)
            os.replace(tmp, archive)
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        b.close()
    return archive.stat().st_size
