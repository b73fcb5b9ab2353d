"""Signing keys and bundle signatures (build side, with cryptography; devices only verify, with
PyNaCl: runtime/bundle/verify.py).

`bundle.sig` holds an Ed25519 signature over the exact bytes of bundle.json, which lists the
sha256 of every other file, so signing the manifest signs the bundle.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from outpost.runtime.bundle.manifest import MANIFEST
from outpost.runtime.bundle.open import SIGNATURE
from outpost.runtime.bundle.verify import MAX_KEY_BYTES, fingerprint, public_key
from outpost.runtime.errors import InputError, UsageError, one_line
from outpost.runtime.files import read_plain

if TYPE_CHECKING:
    from nacl.signing import VerifyKey


def _public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_paths(prefix: Path) -> tuple[Path, Path]:
    """PREFIX.key and PREFIX.pub for `keygen -o PREFIX`; a prefix that names no file (`/`, `.`,
    `..`, `dir/..`) is a usage error."""
    if prefix.name in ("", ".", ".."):
        raise UsageError(
            f"-o {prefix} names a folder, not a key prefix; pass a prefix such as "
            f"{prefix / 'release'} (writes release.key and release.pub)"
        )
    return prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")


def generate_keypair(private_path: Path, public_path: Path) -> str:
    """Write a PEM private key (mode 600) and a PEM public key; return the key's fingerprint."""
    for p in (private_path, public_path):
        if p.exists():
            raise InputError(
                f"{p} already exists; choose another path (keys are never overwritten)"
            )
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = _public_pem(key)
    private_path.parent.mkdir(parents=True, exist_ok=True)
    # Both written to temp files (the private one created 600) and renamed only when complete:
    # a full disk leaves no empty key behind to block the next try.
    written = []
    try:
        for path, data, mode in ((private_path, private, 0o600), (public_path, public, 0o644)):
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            written.append(tmp)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for tmp, path in zip(written, (private_path, public_path)):
            os.link(tmp, path)  # fails if the path appeared meanwhile: never overwrites a key
    except OSError as e:
        for path in (private_path, public_path):
            if path.exists() and any(path.samefile(t) for t in written if t.exists()):
                path.unlink()
        raise InputError(
            f"cannot write the key pair next to {private_path} ({e.strerror or e}); "
            "free space or choose a writable folder"
        ) from None
    finally:
        for tmp in written:
            tmp.unlink(missing_ok=True)
    return fingerprint(public)


def _private_key(private_key: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in a PEM file: a plain file of at most MAX_KEY_BYTES (a FIFO or
    a device is never read). InputError naming the file and what it is otherwise."""
    fix = "pass the .key from `outpost keygen`"
    try:
        pem = read_plain(private_key, MAX_KEY_BYTES)
    except FileNotFoundError:
        raise InputError(
            f"--sign {private_key} does not exist; make a key with `outpost keygen`"
        ) from None
    except OSError as e:
        raise InputError(f"--sign {private_key} cannot be read ({e.strerror}); {fix}") from None
    except ValueError as e:  # a FIFO, a socket, a device, a folder, or too big for a key
        raise InputError(f"--sign {private_key} is {e}; {fix}") from None
    if b"PUBLIC KEY-----" in pem:
        raise InputError(
            f"--sign {private_key} is a public key (the .pub goes to devices); sign with the "
            "private half of the pair, the .key from `outpost keygen`"
        )
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise InputError(
            f"--sign {private_key}: not an Ed25519 private key ({one_line(str(e))[:120]}); {fix}"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(
            f"--sign {private_key}: not an Ed25519 key; make one with `outpost keygen`"
        )
    return key


def signer_of(private_key: Path) -> dict[str, VerifyKey]:
    """The public half of a signing key, as `load_public_keys` gives trusted keys (read from its
    .pub's bytes, as a device reads them): what a bundle built with `--sign KEY` trusts of the
    bundles it is built from (`--update`)."""
    pem = _public_pem(_private_key(private_key))
    return {fingerprint(pem): public_key(pem, f"--sign {private_key}")}


def signature_record(data: bytes, private_key: Path) -> dict:
    """The Ed25519 signature of `data` as bundle.sig (and a kit's kit.sig) hold it."""
    key = _private_key(private_key)
    return {
        "algorithm": "ed25519",
        "key": fingerprint(_public_pem(key)),
        "signature": base64.b64encode(key.sign(data)).decode(),
    }


def sign_manifest(root: Path, private_key: Path) -> str:
    """Write root/bundle.sig; return the signing key's fingerprint."""
    record = signature_record((root / MANIFEST).read_bytes(), private_key)
    (root / SIGNATURE).write_text(json.dumps(record) + "\n")
    return record["key"]
