"""Open a bundle: read bundle.json (runtime/bundle/manifest.py) once and pin the files it lists.

A bundle is a folder:
    bundle.json        manifest (schema, versions, settings, checks, size + sha256 of every file)
    bundle.sig         optional Ed25519 signature over bundle.json (runtime/bundle/verify.py)
    model/             onnxruntime-genai model folder (genai_config.json, model.onnx, tokenizer)
    embedder/          model.onnx (pooling and normalisation inside the graph) + tokenizer.json
    index.usearch      usearch index over the chunk embeddings
    chunks.sqlite      chunk store (text, source, heading, offsets) with an FTS5 table

What is read is what was checked. `open_bundle` keeps the exact bytes of bundle.json it parsed
(the signature is checked over those bytes, the content id is their hash). `pin` opens every
listed file once, relative to the bundle folder's own descriptor and following no symbolic
link, and holds the descriptors: sizes, stamps and hashes come from them (runtime/bundle/verify.py),
and the loaders (onnxruntime, onnxruntime-genai, usearch, SQLite) read through `view`, a private
folder (mode 0700) of links to /proc/self/fd/N. Each name there resolves to the very inode that
was hashed, whatever the bundle folder is called (`%2f`, `#`, `?`, spaces, newlines) and
whatever is renamed inside it later; a file the manifest does not list is not there at all.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import secrets
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from outpost.runtime.bundle.manifest import MANIFEST, Manifest
from outpost.runtime.bundle.store import ChunkStore
from outpost.runtime.errors import BundleError
from outpost.runtime.files import BLOCK, kind_of, pid_alive, read_plain

SIGNATURE = "bundle.sig"
NOT_LISTED = {MANIFEST, SIGNATURE}
MAX_MANIFEST_BYTES = 16 * 2**20
PROC_FD = Path("/proc/self/fd")
VIEW_PREFIX = "outpost-view-"


@dataclass(frozen=True)
class Problem:
    path: str
    kind: str  # missing | changed | unexpected | binding | signature
    detail: str

    def __str__(self) -> str:
        if self.kind == "missing":
            return f"{self.path} is missing"
        if self.kind == "changed":
            return f"{self.path} has changed ({self.detail})"
        return f"{self.path}: {self.kind} ({self.detail})"


@dataclass(eq=False)
class Pinned:
    """The listed files as opened once: descriptors by manifest path, and the view folder."""

    fds: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)  # files that could not be opened
    view: Path | None = None

    def stat(self, rel: str) -> os.stat_result:
        return os.fstat(self.fds[rel])

    def sha256(self, rel: str) -> str:
        digest, fd, offset = hashlib.sha256(), self.fds[rel], 0
        while block := os.pread(fd, BLOCK, offset):
            digest.update(block)
            offset += len(block)
        return digest.hexdigest()

    def read(self, rel: str, offset: int, size: int) -> bytes:
        return os.pread(self.fds[rel], size, offset)

    def read_all(self, rel: str, limit: int) -> tuple[bytes, str]:
        """The whole file from its descriptor (at most `limit` bytes) and the sha256 of exactly
        those bytes, in one pass."""
        digest, fd, parts, offset = hashlib.sha256(), self.fds[rel], [], 0
        while block := os.pread(fd, BLOCK, offset):
            offset += len(block)
            if offset > limit:
                raise BundleError(f"{rel} is over {limit} bytes; copy the bundle again")
            digest.update(block)
            parts.append(block)
        return b"".join(parts), digest.hexdigest()

    def __del__(self) -> None:  # a release the server let go of: its descriptors and view too
        self.close()

    def close(self) -> None:
        if self.view is not None:
            shutil.rmtree(self.view, ignore_errors=True)
            self.view = None
        for fd in self.fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = {}


@dataclass(frozen=True)
class Bundle:
    path: Path  # where loaders read the files: the pinned view once pinned, else the folder
    manifest: Manifest
    manifest_bytes: bytes = b""  # the exact bytes parsed (what a signature covers)
    source: Path | None = None  # the folder the user named
    pinned: Pinned | None = None
    signed_by: str | None = None  # the trusted key that verified its signature, when one did

    def file(self, relative: str) -> Path:
        return self.path / relative

    @property
    def model_dir(self) -> Path:
        return self.path / self.manifest.model.dir

    @property
    def folder(self) -> Path:
        return self.source or self.path

    @property
    def content_id(self) -> str:
        return hashlib.sha256(self.manifest_bytes).hexdigest()

    def verified_bytes(self, rel: str, check: bool = True) -> bytes:
        """A listed file's bytes, read once from the pinned descriptor and hashed as they are
        read: the bytes returned are exactly those whose sha256 bundle.json lists, whatever
        happens to the folder's names. For loaders that resolve paths themselves (SQLite).
        `check` False (--no-verify): the pinned bytes, their hash not compared."""
        entry = self.manifest.files[rel]
        if self.pinned is None or rel not in self.pinned.fds:
            raise BundleError(f"{rel} was not opened with the bundle; open it with open_verified")
        data, digest = self.pinned.read_all(rel, entry.size)
        if check and (len(data) != entry.size or digest != entry.sha256):
            raise BundleError(
                f"bundle {self.folder} failed verification: {rel} has changed "
                f"({len(data)} bytes, sha256 {digest[:12]}…, bundle.json lists {entry.size} bytes, "
                f"{entry.sha256[:12]}…); copy it again or re-export it"
            )
        return data

    def close(self) -> None:
        if self.pinned is not None:
            self.pinned.close()


def open_store(bundle: Bundle, check: bool = True) -> ChunkStore:
    """The chunk store: from its verified bytes when the bundle's files are pinned (a device),
    from its path otherwise (the export's own, just-written folder)."""
    rel = bundle.manifest.store.file
    if bundle.pinned is None:
        return ChunkStore(bundle.file(rel))
    return ChunkStore(data=bundle.verified_bytes(rel, check))


def _open_nofollow(root_fd: int, rel: str, dirs: dict[str, int]) -> int:
    """Open `rel` below the folder `root_fd`, one component at a time, following no link."""
    parent, _, name = rel.rpartition("/")
    at = root_fd
    if parent:
        walked = ""
        for part in parent.split("/"):
            walked = f"{walked}/{part}" if walked else part
            if walked not in dirs:
                dirs[walked] = os.open(
                    part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=at
                )
            at = dirs[walked]
    # O_NONBLOCK: a FIFO put in a file's place must not hang the open
    return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=at)


def pin(root: Path, manifest: Manifest, view: bool = False) -> Pinned:
    """Open every listed file (plain files only, no link followed); with `view`, make the
    private folder of links the loaders read through (Linux: /proc/self/fd)."""
    pinned = Pinned()
    dirs: dict[str, int] = {}
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise BundleError(f"{root} cannot be opened ({e.strerror}); pass a bundle folder") from None
    try:
        for rel in sorted(manifest.files):
            try:
                fd = _open_nofollow(root_fd, rel, dirs)
            except OSError:
                pinned.problems.append(
                    Problem(rel, "missing", "listed in bundle.json, not on disk as a plain file")
                )
                continue
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                pinned.problems.append(
                    Problem(rel, "missing", "listed in bundle.json, not on disk as a plain file")
                )
                continue
            os.set_blocking(fd, True)
            pinned.fds[rel] = fd
    finally:
        for fd in [*dirs.values(), root_fd]:
            os.close(fd)
    if view and PROC_FD.is_dir():
        try:
            pinned.view = _make_view(pinned.fds)
        except OSError as e:
            pinned.close()
            raise BundleError(
                f"cannot make the private view of the bundle's files in {tempfile.gettempdir()} "
                f"({e.strerror}); set TMPDIR to a writable folder"
            ) from None
    return pinned


def _make_view(fds: dict[str, int]) -> Path:
    base = Path(tempfile.gettempdir())
    _remove_stale_views(base)
    folder = base / f"{VIEW_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
    os.mkdir(folder, 0o700)
    atexit.register(shutil.rmtree, folder, True)
    for rel, fd in fds.items():
        link = folder / rel
        link.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.symlink(f"{PROC_FD}/{fd}", link)
    return folder


def _remove_stale_views(base: Path) -> None:
    """Views of processes that are gone (killed before their exit handlers ran)."""
    try:
        entries = list(base.glob(f"{VIEW_PREFIX}*"))
    except OSError:
        return
    for folder in entries:
        pid = folder.name[len(VIEW_PREFIX) :].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def check_pinned(manifest: Manifest, pinned: Pinned, hashes: bool = True) -> list[Problem]:
    """Every listed file opened as a plain file with its size (and sha256), read from the
    descriptors the loaders will use."""
    problems = list(pinned.problems)
    for rel in sorted(pinned.fds):
        entry = manifest.files[rel]
        if (size := pinned.stat(rel).st_size) != entry.size:
            problems.append(Problem(rel, "changed", f"{size} bytes, expected {entry.size}"))
        elif hashes and pinned.sha256(rel) != entry.sha256:
            problems.append(Problem(rel, "changed", "sha256 differs from bundle.json"))
    return sorted(problems, key=lambda p: p.path)


def unexpected_files(root: Path, manifest: Manifest) -> list[Problem]:
    """Every entry in the bundle folder that bundle.json does not list, named for what it is
    (a file, a link, a FIFO, a socket, a device), and every empty folder. Links are not
    followed."""
    problems = []
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root).as_posix()
        try:
            mode = f.lstat().st_mode
        except OSError:
            continue  # gone since it was listed
        if stat.S_ISDIR(mode):
            try:
                with os.scandir(f) as entries:
                    empty = next(entries, None) is None
            except OSError as e:
                problems.append(Problem(rel, "unexpected", f"an unreadable folder ({e.strerror})"))
                continue
            if empty:
                problems.append(Problem(rel, "unexpected", "an empty folder, not part of a bundle"))
        elif rel not in manifest.files and rel not in NOT_LISTED:
            what = "" if stat.S_ISREG(mode) else f"{kind_of(mode)}, "
            problems.append(Problem(rel, "unexpected", f"{what}not listed in bundle.json"))
    return problems


def check_files(
    root: Path, manifest: Manifest, hashes: bool = True, unexpected: bool = True
) -> list[Problem]:
    """Every listed file present with its size (and sha256); unlisted files reported."""
    pinned = pin(root, manifest)
    try:
        problems = check_pinned(manifest, pinned, hashes)
    finally:
        pinned.close()
    return problems + (unexpected_files(root, manifest) if unexpected else [])


def read_manifest_bytes(root: Path) -> bytes:
    path = root / MANIFEST
    try:
        return read_plain(path, MAX_MANIFEST_BYTES, follow=False)
    except OSError as e:
        raise BundleError(f"{path} is unreadable ({e.strerror}); copy the bundle again") from None
    except ValueError as e:
        raise BundleError(f"{path}: {e}; not a bundle manifest, copy the bundle again") from None


def open_bundle(path: str | Path, check_sizes: bool = True) -> Bundle:
    """Read the manifest (its bytes kept) and (by default) check every listed file's size."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root} is not a folder; pass a bundle made by `outpost export`")
    if not (root / MANIFEST).is_file():
        raise BundleError(
            f"{root} is not a bundle (no {MANIFEST}); build one with `outpost export`"
        )
    raw = read_manifest_bytes(root)
    manifest = Manifest.from_json(raw, str(root / MANIFEST))
    if check_sizes:
        problems = check_files(root, manifest, hashes=False, unexpected=False)
        if problems:
            raise BundleError(
                f"bundle {root} is damaged: {'; '.join(map(str, problems))}; "
                "copy the bundle again or re-export it"
            )
    return Bundle(root, manifest, raw, root)


def open_pinned(path: str | Path, view: bool = False) -> Bundle:
    """open_bundle, then pin its files; with `view`, `path` is the pinned view. Close it."""
    opened = open_bundle(path, check_sizes=False)
    pinned = pin(opened.folder, opened.manifest, view=view)
    return Bundle(
        pinned.view or opened.folder, opened.manifest, opened.manifest_bytes, opened.folder, pinned
    )
