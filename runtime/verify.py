"""Trust in a bundle: file hashes, the index-embedder-store binding, and Ed25519 signatures.

- `runtime.bundle.check_files`: every file listed in bundle.json is present with its size and
  sha256; files the manifest does not list are reported as unexpected.
- `check_binding`: the index was built by this embedder (file hash, dimension, metric,
  normalisation) over this chunk store (same count).
- Signatures: `bundle.sig` holds an Ed25519 signature over the exact bytes of bundle.json
  (which lists the sha256 of every other file), so signing the manifest signs the bundle.
- On open: with trusted keys every file is hashed every time. Without, a bundle whose hashes
  were checked is remembered in a cache folder together with the device, inode, size, mtime and
  ctime of each of its files; any difference (a copy, an edit, a touched file) hashes it again.
  ctime cannot be set back by a user, so an edit that restores size and mtime still shows.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from runtime.bundle import SIGNATURE, Problem, check_files
from runtime.errors import BundleError, InputError, UsageError
from runtime.manifest import MANIFEST, Manifest


def content_id(root: Path) -> str:
    return hashlib.sha256((root / MANIFEST).read_bytes()).hexdigest()


def check_binding(root: Path, manifest: Manifest) -> list[Problem]:
    """The index must fit the embedder and the chunk store it was built with."""
    index, emb, store = manifest.index, manifest.embedder, manifest.store
    problems = []
    embedder_file = manifest.files.get(emb.file)
    if embedder_file is None or index.embedder.sha256 != embedder_file.sha256:
        problems.append(Problem(index.file, "binding", "built by a different embedder model file"))
    for key in ("dim", "normalize"):
        bound, actual = getattr(index.embedder, key), getattr(emb, key)
        if bound != actual:
            problems.append(
                Problem(
                    index.file, "binding", f"embedder {key} {actual!r}, index built for {bound!r}"
                )
            )
    if index.count != store.count:
        problems.append(
            Problem(store.file, "binding", f"{store.count} chunks, index holds {index.count}")
        )
    if index.metric != "cos":
        problems.append(
            Problem(index.file, "binding", f"metric {index.metric!r}, the runtime expects 'cos'")
        )
    return problems


# --- signatures ---------------------------------------------------------------------------


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:  # pragma: no cover - cryptography is a base dependency
        raise UsageError(
            "signatures need the cryptography package: pip install cryptography"
        ) from None
    return InvalidSignature, serialization, Ed25519PublicKey


def fingerprint(public_pem: bytes) -> str:
    return hashlib.sha256(public_pem.strip()).hexdigest()[:16]


def load_public_keys(paths: list[Path]) -> dict[str, object]:
    _, serialization, Ed25519PublicKey = _crypto()
    keys = {}
    for p in paths:
        files = sorted(p.glob("*.pub")) + sorted(p.glob("*.pem")) if p.is_dir() else [p]
        for f in files:
            try:
                pem = f.read_bytes()
                key = serialization.load_pem_public_key(pem)
            except (OSError, ValueError) as e:
                raise InputError(f"--trust {f}: not a readable public key ({e})") from None
            if not isinstance(key, Ed25519PublicKey):
                raise InputError(f"--trust {f}: not an Ed25519 public key")
            keys[fingerprint(pem)] = key
    return keys


def check_signature(root: Path, trusted: dict[str, object]) -> Problem | None:
    """None when a trusted key signed bundle.json; otherwise what is wrong."""
    InvalidSignature, *_ = _crypto()
    sig_path = root / SIGNATURE
    if not sig_path.is_file():
        return Problem(
            SIGNATURE, "signature", "the bundle is not signed; export it with --sign KEY"
        )
    try:
        record = json.loads(sig_path.read_text())
        signature = base64.b64decode(record["signature"], validate=True)
        key_id = record["key"]
    except (ValueError, KeyError, TypeError):
        return Problem(SIGNATURE, "signature", "unreadable signature file")
    key = trusted.get(key_id)
    if key is None:
        return Problem(SIGNATURE, "signature", f"signed by key {key_id}, which is not trusted here")
    try:
        key.verify(signature, (root / MANIFEST).read_bytes())
    except InvalidSignature:
        return Problem(
            SIGNATURE,
            "signature",
            f"does not match bundle.json (key {key_id}): the manifest was changed after signing",
        )
    return None


# --- the check the runtime runs when it opens a bundle -------------------------------------


def cache_dir() -> Path:
    base = os.environ.get("OUTPOST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "outpost"
    )
    return Path(base) / "verified"


def _stamp(root: Path, manifest: Manifest) -> dict:
    """What a file's bytes cannot change without changing: device, inode, size, mtime, ctime."""
    stamp = {"root": str(root.resolve())}
    for rel in sorted(manifest.files):
        try:
            st = (root / rel).stat()
        except OSError:
            return {}
        stamp[rel] = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    st = (root / MANIFEST).stat()
    stamp[MANIFEST] = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    return stamp


def _marker(root: Path) -> Path:
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:32]
    return cache_dir() / f"{content_id(root)}-{key}.json"


def verify_on_open(
    root: Path, manifest: Manifest, trusted_paths: list[Path] = (), always_hash: bool = False
) -> bool:
    """Check sizes, binding, signature (with trusted keys) and hashes: with trusted keys or
    `always_hash` every time, otherwise whenever the files' stamps differ from the last full
    check. Returns True when hashes were checked now. Raises BundleError naming each problem."""
    trusted = load_public_keys(list(trusted_paths)) if trusted_paths else {}
    problems: list[Problem] = []
    if trusted:
        if (p := check_signature(root, trusted)) is not None:
            problems.append(p)
    marker = _marker(root)
    stamp = _stamp(root, manifest)
    full = always_hash or bool(trusted) or not stamp or _read_stamp(marker) != stamp
    problems += check_files(root, manifest, hashes=full)
    problems += check_binding(root, manifest)
    if problems:
        raise BundleError(
            f"bundle {root} failed verification: {'; '.join(map(str, problems))}; copy it again or re-export it (or pass --no-verify)"
        )
    if full and stamp:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            tmp = marker.with_name(f".{marker.name}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps(stamp))
            os.replace(tmp, marker)
        except OSError:
            pass  # a read-only device still works; it just hashes again next time
    return full


def _read_stamp(marker: Path) -> dict | None:
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
