"""Trust in a bundle: file hashes, the index-embedder-store binding, and Ed25519 signatures.

- `runtime.bundle.check_files`: every file listed in bundle.json is present with its size and
  sha256; whatever else is in the folder (a file, a link, a FIFO, a socket, a device, an empty
  folder) is reported as unexpected, named for what it is.
- `check_binding`: the index was built by this embedder (file hash, dimension, metric,
  normalisation) over this chunk store (same count).
- Signatures: `bundle.sig` holds an Ed25519 signature over the exact bytes of bundle.json
  (which lists the sha256 of every other file), so signing the manifest signs the bundle.
  Checked with PyNaCl (libsodium); the build side signs with cryptography (export/ship/sign.py).
  A trusted key is the PEM `outpost keygen` writes, parsed here: one PUBLIC KEY block whose DER
  is Ed25519's SubjectPublicKeyInfo, nothing else.
- On open: with trusted keys every file is hashed every time. Without, a bundle whose hashes
  were checked is remembered in a cache folder together with the device, inode, size, mtime and
  ctime of each of its files; any difference (a copy, an edit, a touched file) hashes it again.
  ctime cannot be set back by a user, so an edit that restores size and mtime still shows.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from outpost.runtime.bundle.manifest import Manifest
from outpost.runtime.bundle.open import (
    SIGNATURE,
    Bundle,
    Problem,
    check_pinned,
    open_bundle,
    open_pinned,
    unexpected_files,
)
from outpost.runtime.errors import BundleError, InputError, UsageError
from outpost.runtime.files import read_plain, write_atomic

if TYPE_CHECKING:
    from nacl.signing import VerifyKey

MAX_KEY_BYTES = 64 * 1024
PEM_BEGIN, PEM_END = b"-----BEGIN PUBLIC KEY-----", b"-----END PUBLIC KEY-----"
# DER of an Ed25519 SubjectPublicKeyInfo (RFC 8410): this prefix, then the 32-byte key.
ED25519_SPKI = bytes.fromhex("302a300506032b6570032100")
# Algorithm OIDs (DER body) of the public keys a .pub may hold instead, to name what was given.
OTHER_ALGORITHMS = {
    bytes.fromhex("2a864886f70d010101"): "an RSA",
    bytes.fromhex("2a8648ce3d0201"): "an EC",
    bytes.fromhex("2b656e"): "an X25519",
    bytes.fromhex("2b6571"): "an Ed448",
}


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


def _nacl() -> tuple[type[VerifyKey], type[Exception]]:
    try:
        from nacl.exceptions import BadSignatureError
        from nacl.signing import VerifyKey
    except ImportError:  # pragma: no cover - PyNaCl is a base dependency
        raise UsageError("signatures need the PyNaCl package: pip install pynacl") from None
    return VerifyKey, BadSignatureError


def fingerprint(public_pem: bytes) -> str:
    return hashlib.sha256(public_pem.strip()).hexdigest()[:16]


def _read_key(f: Path) -> bytes:
    """A key file's bytes: a plain file of at most MAX_KEY_BYTES (never a pipe or a device)."""
    try:
        return read_plain(f, MAX_KEY_BYTES)
    except OSError as e:
        raise InputError(f"--trust {f}: cannot be read ({e.strerror}); pass a .pub file") from None
    except ValueError as e:
        raise InputError(f"--trust {f}: {e}; pass a .pub file or a folder of them") from None


def public_key(pem: bytes, where: str) -> VerifyKey:
    """The Ed25519 key in a PEM public key as `outpost keygen` writes it: one PUBLIC KEY block
    (surrounding whitespace aside), base64 in lines of 64 with LF line ends, whose DER is
    Ed25519's SubjectPublicKeyInfo with exactly 32 key bytes. Anything else is an InputError
    naming `where` (`--trust FILE`)."""
    VerifyKey, _ = _nacl()
    fix = "pass the release key's .pub file (from `outpost keygen`)"
    lines = pem.strip().splitlines()
    if b"PRIVATE KEY-----" in pem:
        raise InputError(f"{where} is a private key, which never goes to a device; {fix}")
    if not lines or lines[0] != PEM_BEGIN:
        raise InputError(
            f"{where}: not a readable public key (it does not start with a "
            f"'{PEM_BEGIN.decode()}' line); {fix}"
        )
    if lines[-1] != PEM_END:
        raise InputError(
            f"{where}: not a readable public key (it does not end with its "
            f"'{PEM_END.decode()}' line: cut short, or with more after it); {fix}"
        )
    body = lines[1:-1]
    if any(line.startswith(b"-----") for line in body):
        raise InputError(f"{where}: not a readable public key (more than one PEM block); {fix}")
    try:
        der = base64.b64decode(b"".join(body), validate=True)
    except binascii.Error:
        raise InputError(
            f"{where}: not a readable public key (its body is not base64); {fix}"
        ) from None
    if not (der.startswith(ED25519_SPKI) or ED25519_SPKI.startswith(der)):
        kind = next(
            (name for oid, name in OTHER_ALGORITHMS.items() if bytes([6, len(oid)]) + oid in der),
            "another kind of",
        )
        raise InputError(f"{where}: {kind} public key, not an Ed25519 one; {fix}")
    if len(der) != len(ED25519_SPKI) + 32:
        raise InputError(
            f"{where}: an Ed25519 public key cut short or with bytes added ({len(der)} bytes of "
            f"DER; an Ed25519 key has {len(ED25519_SPKI) + 32}); {fix}"
        )
    body64 = base64.b64encode(der)
    written = b"\n".join([PEM_BEGIN, *(body64[i : i + 64] for i in range(0, len(body64), 64))])
    if pem.strip() != written + b"\n" + PEM_END:
        # The key id is the sha256 of the file's text: another layout of the same key (CR LF
        # line ends, the body wrapped otherwise) would be refused later as an untrusted signer.
        raise InputError(
            f"{where}: the Ed25519 key is not laid out as `outpost keygen` writes it (line "
            f"endings or line breaks changed), so its key id would match no signature; {fix}"
        )
    return VerifyKey(der[len(ED25519_SPKI) :])


def load_public_keys(paths: list[Path]) -> dict[str, VerifyKey]:
    """The Ed25519 public keys in the given files and folders (*.pub, *.pem). Asking for trust
    and finding no key is an error: trust is never silently off."""
    keys = {}
    for p in paths:
        if p.is_dir():
            files = sorted(p.glob("*.pub")) + sorted(p.glob("*.pem"))
            if not files:
                raise InputError(
                    f"--trust {p}: the folder holds no public key (*.pub or *.pem); put the "
                    "release key's .pub file there (never the .key)"
                )
        else:
            files = [p]
        for f in files:
            pem = _read_key(f)
            keys[fingerprint(pem)] = public_key(pem, f"--trust {f}")
    if paths and not keys:
        raise InputError("--trust names no public key; pass the release key's .pub file")
    return keys


def check_signature(
    root: Path, trusted: dict[str, VerifyKey], manifest_bytes: bytes | None = None
) -> Problem | None:
    """None when a trusted key signed these bundle.json bytes; otherwise what is wrong."""
    if not trusted:
        return Problem(SIGNATURE, "signature", "no trusted key to check the signature with")
    if manifest_bytes is None:
        manifest_bytes = open_bundle(root, check_sizes=False).manifest_bytes
    try:
        raw = read_plain(root / SIGNATURE, MAX_KEY_BYTES, follow=False)
    except OSError:
        return signature_problem(None, manifest_bytes, trusted)
    except ValueError as e:
        return Problem(SIGNATURE, "signature", str(e))
    return signature_problem(raw, manifest_bytes, trusted)


def signer(root: Path, trusted: dict[str, VerifyKey], manifest_bytes: bytes) -> str | None:
    """The id of the trusted key whose signature of exactly `manifest_bytes` bundle.sig holds
    (read and checked again here), or None."""
    try:
        raw = read_plain(root / SIGNATURE, MAX_KEY_BYTES, follow=False)
        key_id = json.loads(raw)["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(key_id, str) or signature_problem(raw, manifest_bytes, trusted) is not None:
        return None
    return key_id


def signature_problem(
    signature_file: bytes | None, manifest_bytes: bytes, trusted: dict[str, VerifyKey]
) -> Problem | None:
    """None when `signature_file` (bundle.sig's bytes) is a trusted key's signature of exactly
    `manifest_bytes`; otherwise what is wrong."""
    _, BadSignatureError = _nacl()
    if signature_file is None:
        return Problem(
            SIGNATURE, "signature", "the bundle is not signed; export it with --sign KEY"
        )
    try:
        record = json.loads(signature_file)
        signature = base64.b64decode(record["signature"], validate=True)
        key_id = record["key"]
    except (ValueError, KeyError, TypeError):
        return Problem(SIGNATURE, "signature", "unreadable signature file")
    key = trusted.get(key_id) if isinstance(key_id, str) else None
    if key is None:
        return Problem(SIGNATURE, "signature", f"signed by key {key_id}, which is not trusted here")
    mismatch = Problem(
        SIGNATURE,
        "signature",
        f"does not match bundle.json (key {key_id}): the manifest was changed after signing",
    )
    if len(signature) != 64:  # PyNaCl raises ValueError for it; as before, it does not match
        return mismatch
    try:
        key.verify(manifest_bytes, signature)
    except BadSignatureError:
        return mismatch
    return None


# --- the check the runtime runs when it opens a bundle -------------------------------------


def cache_dir() -> Path:
    base = os.environ.get("OUTPOST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "outpost"
    )
    return Path(base) / "verified"


def _stamp(bundle: Bundle) -> dict[str, object]:
    """What a file's bytes cannot change without changing: device, inode, size, mtime, ctime,
    read from the descriptors the loaders use."""
    assert bundle.pinned is not None  # opened with open_pinned
    stamp: dict[str, object] = {"root": str(bundle.folder.resolve())}
    for rel in sorted(bundle.manifest.files):
        if rel not in bundle.pinned.fds:
            return {}
        st = bundle.pinned.stat(rel)
        stamp[rel] = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    return stamp


def _marker(bundle: Bundle) -> Path:
    key = hashlib.sha256(str(bundle.folder.resolve()).encode()).hexdigest()[:32]
    return cache_dir() / f"{bundle.content_id}-{key}.json"


def problems_of(
    bundle: Bundle, trusted: dict[str, VerifyKey] | None, hashes: bool, unexpected: bool
) -> list[Problem]:
    """Everything wrong with an open (pinned) bundle: files, binding and, with keys, signature."""
    problems: list[Problem] = []
    if trusted is not None and (
        p := check_signature(bundle.folder, trusted, bundle.manifest_bytes)
    ):
        problems.append(p)
    assert bundle.pinned is not None  # opened with open_pinned
    problems += check_pinned(bundle.manifest, bundle.pinned, hashes)
    if unexpected:
        problems += unexpected_files(bundle.folder, bundle.manifest)
    return problems + check_binding(bundle.folder, bundle.manifest)


def verify_on_open(
    bundle: Bundle, trusted_paths: Sequence[Path] = (), always_hash: bool = False
) -> bool:
    """Check sizes, binding, signature (when trust is asked for) and hashes of a pinned bundle:
    with trusted keys or `always_hash` every time, otherwise whenever the files' stamps differ
    from the last full check. Returns True when hashes were checked now. Raises BundleError
    naming each problem (InputError when --trust names no key)."""
    trusted = load_public_keys(list(trusted_paths)) if trusted_paths else None
    marker = _marker(bundle)
    stamp = _stamp(bundle)
    full = always_hash or trusted is not None or not stamp or _read_stamp(marker) != stamp
    problems = problems_of(bundle, trusted, hashes=full, unexpected=True)
    if problems:
        raise BundleError(
            f"bundle {bundle.folder} failed verification: {'; '.join(map(str, problems))}; copy it again or re-export it (or pass --no-verify)"
        )
    if full and stamp:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(marker, json.dumps(stamp), durable=False)
        except OSError:
            pass  # a read-only device still works; it just hashes again next time
    return full


def open_verified(
    path: str | Path,
    trusted_paths: Sequence[Path] = (),
    verify: bool = True,
    always_hash: bool = False,
    view: bool = True,
) -> Bundle:
    """Open a bundle with its files pinned, verify it (always when trust is asked for), and
    return it with `path` pointing at the pinned view: what the loaders read is what was checked.
    The caller closes it (`bundle.close()`) when done."""
    bundle = open_pinned(path, view=view)
    assert bundle.pinned is not None
    try:
        if verify or trusted_paths:
            verify_on_open(bundle, trusted_paths, always_hash)
        elif problems := check_pinned(bundle.manifest, bundle.pinned, hashes=False):
            raise BundleError(
                f"bundle {bundle.folder} is damaged: {'; '.join(map(str, problems))}; "
                "copy the bundle again or re-export it"
            )
        if trusted_paths:  # which trusted key signed it, for what the device records
            keys = load_public_keys(list(trusted_paths))
            key = signer(bundle.folder, keys, bundle.manifest_bytes)
            bundle = dataclasses.replace(bundle, signed_by=key)
    except BaseException:
        bundle.close()
        raise
    return bundle


def _read_stamp(marker: Path) -> dict | None:
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
