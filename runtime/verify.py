"""Trust in a bundle: file hashes, the index-embedder-store binding, and Ed25519 signatures.

- `check_files`: every file listed in bundle.json is present with its size and sha256; files
  the manifest does not list are reported as unexpected.
- `check_binding`: the index was built by this embedder (file hash, dimension, metric,
  normalisation) over this chunk store (same count).
- Signatures: `bundle.sig` holds an Ed25519 signature over the exact bytes of bundle.json
  (which lists the sha256 of every other file), so signing the manifest signs the bundle.
- Full hashing is slow on a small device, so a bundle whose hashes were checked once is
  remembered by content id (the sha256 of bundle.json) in a cache folder; later opens check sizes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from runtime.bundle import MANIFEST, sha256_file
from runtime.errors import BundleError, UsageError

SIGNATURE = "bundle.sig"
NOT_LISTED = {MANIFEST, SIGNATURE}


@dataclass(frozen=True)
class Problem:
    path: str
    kind: str  # missing | changed | unexpected | binding | signature
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: {self.kind} ({self.detail})"


def content_id(root: Path) -> str:
    return hashlib.sha256((root / MANIFEST).read_bytes()).hexdigest()


def check_files(root: Path, manifest: dict, hashes: bool = True) -> list[Problem]:
    problems = []
    listed = manifest.get("files", {})
    for rel, meta in sorted(listed.items()):
        f = root / rel
        if not f.is_file():
            problems.append(Problem(rel, "missing", "listed in bundle.json, not on disk"))
        elif f.stat().st_size != meta["size"]:
            problems.append(
                Problem(rel, "changed", f"{f.stat().st_size} bytes, expected {meta['size']}")
            )
        elif hashes and sha256_file(f) != meta["sha256"]:
            problems.append(Problem(rel, "changed", "sha256 differs from bundle.json"))
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root).as_posix()
        if (f.is_file() or f.is_symlink()) and rel not in listed and rel not in NOT_LISTED:
            problems.append(Problem(rel, "unexpected", "not listed in bundle.json"))
    return problems


def check_binding(root: Path, manifest: dict) -> list[Problem]:
    """The index must fit the embedder and the chunk store it was built with."""
    index, emb, store = manifest["index"], manifest["embedder"], manifest["store"]
    problems = []
    bound = index.get("embedder", {})
    embedder_file = manifest["files"].get(emb["file"], {})
    if bound.get("sha256") != embedder_file.get("sha256"):
        problems.append(
            Problem(index["file"], "binding", "built by a different embedder model file")
        )
    for key in ("dim", "normalize"):
        if bound.get(key) != emb.get(key):
            problems.append(
                Problem(
                    index["file"],
                    "binding",
                    f"embedder {key} {emb.get(key)!r}, index built for {bound.get(key)!r}",
                )
            )
    if index.get("count") != store.get("count"):
        problems.append(
            Problem(
                store["file"],
                "binding",
                f"{store.get('count')} chunks, index holds {index.get('count')}",
            )
        )
    if index.get("metric") != "cos":
        problems.append(
            Problem(
                index["file"],
                "binding",
                f"metric {index.get('metric')!r}, the runtime expects 'cos'",
            )
        )
    return problems


# --- signatures ---------------------------------------------------------------------------


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import (
            Ed25519PrivateKey,
            Ed25519PublicKey,
        )
    except ImportError:  # pragma: no cover - cryptography is a base dependency
        raise UsageError(
            "signatures need the cryptography package: pip install cryptography"
        ) from None
    return InvalidSignature, serialization, Ed25519PrivateKey, Ed25519PublicKey


def generate_keypair(private_path: Path, public_path: Path) -> str:
    """Write a PEM private key (mode 600) and a PEM public key; return the key's fingerprint."""
    _, serialization, Ed25519PrivateKey, _ = _crypto()
    for p in (private_path, public_path):
        if p.exists():
            raise UsageError(
                f"{p} already exists; choose another path (keys are never overwritten)"
            )
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    public_path.write_bytes(public)
    return fingerprint(public)


def fingerprint(public_pem: bytes) -> str:
    return hashlib.sha256(public_pem.strip()).hexdigest()[:16]


def sign_manifest(root: Path, private_key: Path) -> str:
    _, serialization, Ed25519PrivateKey, _ = _crypto()
    try:
        key = serialization.load_pem_private_key(private_key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise UsageError(
            f"--sign {private_key}: not a readable Ed25519 private key ({e})"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(
            f"--sign {private_key}: not an Ed25519 key; make one with `outpost keygen`"
        )
    signature = key.sign((root / MANIFEST).read_bytes())
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = {
        "algorithm": "ed25519",
        "key": fingerprint(public),
        "signature": base64.b64encode(signature).decode(),
    }
    (root / SIGNATURE).write_text(json.dumps(record) + "\n")
    return record["key"]


def load_public_keys(paths: list[Path]) -> dict[str, object]:
    _, serialization, _, Ed25519PublicKey = _crypto()
    keys = {}
    for p in paths:
        files = sorted(p.glob("*.pub")) + sorted(p.glob("*.pem")) if p.is_dir() else [p]
        for f in files:
            try:
                pem = f.read_bytes()
                key = serialization.load_pem_public_key(pem)
            except (OSError, ValueError) as e:
                raise UsageError(f"--trust {f}: not a readable public key ({e})") from None
            if not isinstance(key, Ed25519PublicKey):
                raise UsageError(f"--trust {f}: not an Ed25519 public key")
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


def verify_on_open(root: Path, manifest: dict, trusted_paths: list[Path] = ()) -> bool:
    """Sizes always; full hashes the first time this content id is seen. Returns True when
    hashes were checked now. Raises BundleError naming each problem."""
    trusted = load_public_keys(list(trusted_paths)) if trusted_paths else {}
    problems: list[Problem] = []
    if trusted:
        if (p := check_signature(root, trusted)) is not None:
            problems.append(p)
    cid = content_id(root)
    marker = cache_dir() / cid
    full = not marker.is_file()
    problems += check_files(root, manifest, hashes=full)
    problems += check_binding(root, manifest)
    if problems:
        raise BundleError(
            f"bundle {root} failed verification: {'; '.join(map(str, problems))}; copy it again or re-export it (or pass --no-verify)"
        )
    if full:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(str(root.resolve()) + "\n")
        except OSError:
            pass  # a read-only device still works; it just hashes again next time
    return full
