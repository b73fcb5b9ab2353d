"""Check an install kit before anything from it is installed. Standard library only: `outpost kit`
copies this file into the kit as tools/check_kit.py, and install.sh runs it with the device's
own Python before a single wheel is installed.

    python3 KIT/tools/check_kit.py KIT [--trust KEY]... [--device-keys DIR]

- Every file of the kit is listed in kit.json with its size and sha256, and nothing else is
  there (kit.json and kit.sig aside).
- kit.sig, when there, is an Ed25519 signature over the exact bytes of kit.json (the same
  record as a bundle's bundle.sig), so signing kit.json signs every file of the kit.
- The keys it is checked against, first found: `--trust`, `OUTPOST_TRUSTED_KEYS`, the keys in
  `--device-keys` (install.sh keeps a signed kit's key in PREFIX/keys, so later kits must be
  signed by it), else the kit's own key (a first install: the key id is printed, to compare with
  the release key's). With keys from the device, an unsigned kit is refused.

The kit's own copy of this file is part of the kit it checks: to trust a kit's origin, check it
on a machine you trust first, with this module (`python -m outpost.export.ship.kit_check KIT --trust
release.pub`) and the release key's .pub.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import stat
import sys
from pathlib import Path, PurePosixPath

MANIFEST = "kit.json"
SIGNATURE = "kit.sig"
MAX_MANIFEST_BYTES = 4 * 2**20
MAX_KEY_BYTES = 64 * 1024
TRUST_VARIABLE = "OUTPOST_TRUSTED_KEYS"
BLOCK = 1 << 20


class KitError(Exception):
    """What is wrong with a kit, in one line that says how to fix it."""


def read_plain(path: Path, limit: int) -> bytes:
    """A small plain file's bytes (never a FIFO, device or link: nothing can hang or flood)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError as e:
        raise KitError(f"{path} cannot be read ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KitError(f"{path} is not a plain file")
        if st.st_size > limit:
            raise KitError(
                f"{path} is {st.st_size} bytes, over the {limit} a file of its kind may have"
            )
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(limit + 1)
    finally:
        os.close(fd)


# --- Ed25519 verification (RFC 8032, section 6; verification only, so no secret is handled) ---

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _add(p1, p2):
    a = (p1[1] - p1[0]) * (p2[1] - p2[0]) % _P
    b = (p1[1] + p1[0]) * (p2[1] + p2[0]) % _P
    c = 2 * p1[3] * p2[3] * _D % _P
    d = 2 * p1[2] * p2[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s: int, point):
    q = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            q = _add(q, point)
        point = _add(point, point)
        s >>= 1
    return q


def _equal(p1, p2) -> bool:
    return (p1[0] * p2[2] - p2[0] * p1[2]) % _P == 0 and (p1[1] * p2[2] - p2[1] * p1[2]) % _P == 0


def _recover_x(y: int, sign: int) -> int | None:
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P)
    if x2 % _P == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None
    if (x & 1) != sign:
        x = _P - x
    return x


def _decompress(s: bytes):
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % _P)


_GY = 4 * pow(5, _P - 2, _P) % _P
_GX = _recover_x(_GY, 0)
assert _GX is not None  # the base point has an x
_G = (_GX, _GY, 1, _GX * _GY % _P)


def ed25519_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` is the Ed25519 signature of `message` by the key `public` (32 bytes)."""
    if len(public) != 32 or len(signature) != 64:
        return False
    a, r = _decompress(public), _decompress(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % _L
    return _equal(_mul(s, _G), _add(r, _mul(h, a)))


_SPKI_ED25519 = bytes.fromhex("302a300506032b6570032100")  # DER prefix of an Ed25519 public key


def public_key_bytes(pem: bytes) -> bytes:
    """The 32 raw bytes of a PEM Ed25519 public key (as `outpost keygen` writes); ValueError else."""
    lines = pem.decode("ascii").strip().splitlines()
    if (
        not lines
        or lines[0] != "-----BEGIN PUBLIC KEY-----"
        or lines[-1] != "-----END PUBLIC KEY-----"
    ):
        raise ValueError("not a PEM public key")
    der = base64.b64decode("".join(lines[1:-1]), validate=True)
    if len(der) != 44 or not der.startswith(_SPKI_ED25519):
        raise ValueError("not an Ed25519 public key")
    return der[len(_SPKI_ED25519) :]


def fingerprint(pem: bytes) -> str:
    """The key id bundle.sig and kit.sig name (as runtime/bundle/verify.py computes it)."""
    return hashlib.sha256(pem.strip()).hexdigest()[:16]


def load_keys(paths: list[Path], what: str) -> dict[str, bytes]:
    """Key id -> raw public key, from files and folders (*.pub, *.pem). Finding none is an error."""
    keys = {}
    for p in paths:
        files = sorted(p.glob("*.pub")) + sorted(p.glob("*.pem")) if p.is_dir() else [p]
        for f in files:
            pem = read_plain(f, MAX_KEY_BYTES)
            try:
                keys[fingerprint(pem)] = public_key_bytes(pem)
            except (ValueError, UnicodeError) as e:
                raise KitError(f"{what} {f}: {e}; pass the release key's .pub file") from None
    if not keys:
        raise KitError(f"{what} names no public key; pass the release key's .pub file")
    return keys


# --- the kit ----------------------------------------------------------------------------------


def _signed_by(kit: Path, raw: bytes, keys: dict[str, bytes], where: str) -> str:
    """The key id that signed kit.json's bytes; KitError when none of `keys` did."""
    if not (kit / SIGNATURE).exists():
        raise KitError(
            f"{kit} is not signed, and {where} trusts only signed kits; make the kit with "
            "`outpost kit --sign KEY`"
        )
    try:
        record = json.loads(read_plain(kit / SIGNATURE, MAX_KEY_BYTES))
        signature = base64.b64decode(record["signature"], validate=True)
        key_id = record["key"]
    except (ValueError, KeyError, TypeError):
        raise KitError(
            f"{kit / SIGNATURE} is not a readable signature; copy the kit again"
        ) from None
    if not isinstance(key_id, str) or key_id not in keys:
        raise KitError(
            f"{kit / SIGNATURE}: signed by key {key_id}, which is not trusted by {where}; make the "
            "kit with the release key, or trust its key"
        )
    if not ed25519_verify(keys[key_id], raw, signature):
        raise KitError(
            f"{kit / SIGNATURE} does not match {MANIFEST} (key {key_id}): {MANIFEST} was changed "
            "after signing; copy the kit again or make it again"
        )
    return key_id


def _safe(rel: str) -> bool:
    p = PurePosixPath(rel)
    return bool(rel) and not p.is_absolute() and ".." not in p.parts and "\\" not in rel


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def check_kit(kit: Path, keys: dict[str, bytes] | None, where: str = "") -> str:
    """Check `kit` (see the module doc); `keys` None: its own key checks kit.sig, when signed.
    Returns what was checked, in words; KitError names the first problem."""
    raw = read_plain(kit / MANIFEST, MAX_MANIFEST_BYTES)
    try:
        manifest = json.loads(raw)
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise KitError(
            f"{kit / MANIFEST} is not the manifest of a kit from this Outpost (no file list); "
            "make the kit again"
        ) from None
    if keys is not None:
        signed = f"signed by key {_signed_by(kit, raw, keys, where)}, trusted by {where}"
    elif (kit / SIGNATURE).exists():
        own = manifest.get("trusted_key")
        if not isinstance(own, str) or not _safe(own) or own not in files:
            raise KitError(f"{kit} is signed but holds no key to check it with; make it again")
        key_id = _signed_by(kit, raw, load_keys([kit / own], "the kit's key"), "its own key")
        signed = (
            f"signed by key {key_id}, the kit's own (a first install: compare it with your "
            "release key's id)"
        )
    else:
        signed = "not signed"
    for rel, entry in files.items():
        path = kit / rel
        try:
            size, sha256 = entry["size"], entry["sha256"]
        except (KeyError, TypeError):
            raise KitError(f"{kit / MANIFEST}: the entry for {rel!r} is malformed") from None
        if not _safe(rel):
            raise KitError(f"{kit / MANIFEST} lists {rel!r}, outside the kit; refusing the kit")
        try:
            st = os.lstat(path)
        except OSError:
            raise KitError(f"{rel} is missing from {kit}; copy the kit again") from None
        if not stat.S_ISREG(st.st_mode):
            raise KitError(f"{rel} in {kit} is not a plain file; copy the kit again")
        if st.st_size != size or _sha256(path) != sha256:
            raise KitError(f"{rel} does not match {MANIFEST} (sha256); copy the kit again")
    for parent, dirs, names in os.walk(kit):
        for name in names + [d for d in dirs if os.path.islink(os.path.join(parent, d))]:
            rel = (Path(parent) / name).relative_to(kit).as_posix()
            if rel not in files and rel not in (MANIFEST, SIGNATURE):
                raise KitError(
                    f"{rel} in {kit} is not listed in {MANIFEST}; remove it or make the kit again"
                )
    return f"{kit}: {len(files)} files match {MANIFEST}; {signed}"


def trusted_keys(given: list[str], device_keys: str | None) -> tuple[dict | None, str]:
    """The keys to check against and where they come from (see the module doc)."""
    if given:
        return load_keys([Path(p) for p in given], "--trust"), "--trust"
    value = os.environ.get(TRUST_VARIABLE)
    if value is not None:
        if not value.strip():
            raise KitError(
                f"{TRUST_VARIABLE} is set but empty, which would turn trust off; name the release "
                f"key's .pub file or folder, or unset it"
            )
        return load_keys([Path(p) for p in value.split()], TRUST_VARIABLE), TRUST_VARIABLE
    if device_keys and Path(device_keys).is_dir():
        folder = Path(device_keys)
        if any(folder.glob("*.pub")) or any(folder.glob("*.pem")):
            return load_keys([folder], "--device-keys"), f"this device ({folder})"
    return None, ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kit", help="The kit folder.")
    ap.add_argument("--trust", action="append", default=[], help="Trusted public key or folder.")
    ap.add_argument("--device-keys", help="Folder of keys a device kept from an earlier install.")
    args = ap.parse_args(argv)
    try:
        keys, where = trusted_keys(args.trust, args.device_keys)
        print(f"checked {check_kit(Path(args.kit), keys, where)}", file=sys.stderr)
    except KitError as e:
        print(f"Error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
