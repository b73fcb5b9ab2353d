"""The device's Ed25519 check (PyNaCl, runtime/bundle/verify.py) against what the build side
writes with cryptography (export/ship/sign.py): the same key files and signatures verify as
before, a .pub that is anything but one Ed25519 public key is one error line, and verifying or
installing a signed bundle never imports cryptography. Fake bundles only: seconds, offline."""

from __future__ import annotations

import base64
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_hardening import one_error_line
from test_layout import DEVICE_FILES, imported_modules

from conftest import ROOT, outpost
from fake_bundle import write_fake_bundle
from outpost.export.ship.sign import (
    generate_keypair,
    sign_manifest,
    signature_record,
    signer_of,
)
from outpost.runtime.bundle.verify import fingerprint, load_public_keys, signature_problem
from outpost.runtime.errors import InputError

# RFC 8032, section 7.1, tests 1 and 2 (public key, message, signature), and test 1's private
# key; test 1's public key as `outpost keygen` writes it (PEM, SubjectPublicKeyInfo) and its id
# as bundle.sig and kit.sig name it. Pinned: the formats on disk never change.
RFC_SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC_VECTORS = [
    (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        b"",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e397"
        "01cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        b"\x72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f361"
        "3d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
]
RFC_PEM = (
    b"-----BEGIN PUBLIC KEY-----\n"
    b"MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n"
    b"-----END PUBLIC KEY-----\n"
)
RFC_KEY_ID = "874261a353575e07"
SPKI = bytes.fromhex("302a300506032b6570032100")


def pem_of(der: bytes) -> bytes:
    return b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(der) + b"-----END PUBLIC KEY-----\n"


def record(key_id: str, signature: bytes) -> bytes:
    return json.dumps(
        {"algorithm": "ed25519", "key": key_id, "signature": base64.b64encode(signature).decode()}
    ).encode()


def test_keys_and_signatures_on_disk_verify_as_before(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(RFC_SEED))
    written = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert written == RFC_PEM == pem_of(SPKI + bytes.fromhex(RFC_VECTORS[0][0]))
    assert fingerprint(RFC_PEM) == RFC_KEY_ID  # the id keygen prints and bundle.sig names
    assert private.sign(RFC_VECTORS[0][1]).hex() == RFC_VECTORS[0][2]
    for i, (public, message, signature) in enumerate(RFC_VECTORS):
        (tmp_path / f"rfc{i}.pub").write_bytes(pem_of(SPKI + bytes.fromhex(public)))
        keys = load_public_keys([tmp_path / f"rfc{i}.pub"])
        (key_id,) = keys
        signed = record(key_id, bytes.fromhex(signature))
        assert signature_problem(signed, message, keys) is None
        assert signature_problem(signed, message + b"\0", keys) is not None
    assert RFC_KEY_ID in load_public_keys([tmp_path])


def test_a_signature_made_by_sign_py_verifies_and_a_flipped_bit_fails(tmp_path):
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization

    key, pub = tmp_path / "release.key", tmp_path / "release.pub"
    key_id = generate_keypair(key, pub)
    keys = load_public_keys([pub])
    assert list(keys) == [key_id] and list(signer_of(key)) == [key_id]
    theirs = serialization.load_pem_public_key(pub.read_bytes())  # the check before PyNaCl
    rng = random.Random(7)
    for n in (0, 1, 64, 1000, 100_000):
        data = rng.randbytes(n)
        signed = signature_record(data, key)
        assert signed["key"] == key_id
        raw = json.dumps(signed).encode()
        assert signature_problem(raw, data, keys) is None
        assert signature_problem(raw, data, signer_of(key)) is None  # `export --update`'s keys
        signature = base64.b64decode(signed["signature"])
        bad = bytearray(signature)
        bad[rng.randrange(64)] ^= 1 << rng.randrange(8)
        cases = [
            (bytes(bad), data),
            (signature, data + b"x"),
            (signature[:63], data),
            (signature + b"\0", data),
            (b"", data),
        ]
        if data:
            edited = bytearray(data)
            edited[rng.randrange(n)] ^= 1 << rng.randrange(8)
            cases.append((signature, bytes(edited)))
        for sig, message in cases:
            problem = signature_problem(record(key_id, sig), message, keys)
            assert problem is not None and "does not match bundle.json" in str(problem)
            with pytest.raises(InvalidSignature):  # cryptography refused every one as well
                theirs.verify(sig, message)


def test_a_degenerate_trusted_key_verifies_nothing(tmp_path):
    """The identity point as a 'key' with R = identity, s = 0 passes the bare Ed25519 equation
    for every message (cryptography accepted it); libsodium refuses small-order keys."""
    (tmp_path / "zero.pub").write_bytes(pem_of(SPKI + b"\x01" + bytes(31)))
    keys = load_public_keys([tmp_path / "zero.pub"])
    (key_id,) = keys
    forged = b"\x01" + bytes(31) + bytes(32)
    assert signature_problem(record(key_id, forged), b"any bundle.json", keys) is not None


def _not_ed25519(tmp_path: Path) -> dict[str, tuple[bytes, str]]:
    """Key files that are not one Ed25519 public key, and what the error line says of each."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    def spki(key) -> bytes:
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    generate_keypair(tmp_path / "real.key", tmp_path / "real.pub")
    good = (tmp_path / "real.pub").read_bytes()
    der = base64.b64decode(b"".join(good.splitlines()[1:-1]))
    return {
        "rsa": (spki(rsa.generate_private_key(65537, 2048)), "an RSA public key"),
        "ec": (spki(ec.generate_private_key(ec.SECP256R1())), "an EC public key"),
        "truncated": (good[: len(good) // 2], "cut short"),
        "trailing text": (good + b"more\n", "with more after it"),
        "two keys": (good + good, "more than one PEM block"),
        "bytes added": (pem_of(der + b"\0"), "cut short or with bytes added"),
        "bytes cut": (pem_of(der[:-1]), "cut short or with bytes added"),
        "private key": ((tmp_path / "real.key").read_bytes(), "is a private key"),
        "garbage": (b"\x00\xffnot a key\n", "not a readable public key"),
        # the same key in another layout: its key id (the file's sha256) would match nothing
        "crlf": (good.replace(b"\n", b"\r\n"), "not laid out as `outpost keygen` writes it"),
        "rewrapped": (good.replace(b"MCow", b"MCow\n", 1), "not laid out as"),
    }


KINDS = [
    "rsa",
    "ec",
    "truncated",
    "trailing text",
    "two keys",
    "bytes added",
    "bytes cut",
    "private key",
    "garbage",
    "crlf",
    "rewrapped",
]


@pytest.mark.parametrize("kind", KINDS)
def test_a_pub_that_is_not_one_ed25519_public_key_is_one_line(tmp_path, kind):
    bundle = tmp_path / "bundle"
    write_fake_bundle(bundle)
    sign_manifest(bundle, _signing_key(tmp_path))
    data, says = _not_ed25519(tmp_path)[kind]
    pub = tmp_path / "bad.pub"
    pub.write_bytes(data)
    line = one_error_line(outpost("verify", str(bundle), "--trust", str(pub), timeout=60))
    assert f"--trust {pub}" in line and says in line and "pass the release key's .pub" in line
    with pytest.raises(
        InputError, match=re.escape(f"--trust {pub}")
    ):  # a folder of keys holding it
        load_public_keys([tmp_path / "real.pub", tmp_path])


def _signing_key(tmp_path: Path) -> Path:
    generate_keypair(tmp_path / "release.key", tmp_path / "release.pub")
    return tmp_path / "release.key"


def _signed_release(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A signed fake bundle, its archive, and the .pub that signed it."""
    from outpost.export.ship.pack import pack

    bundle = tmp_path / "bundle"
    write_fake_bundle(bundle)
    sign_manifest(bundle, _signing_key(tmp_path))
    pack(bundle, tmp_path / "release.tar")
    return bundle, tmp_path / "release.tar", tmp_path / "release.pub"


def test_verifying_and_installing_never_import_cryptography(tmp_path):
    bundle, archive, pub = _signed_release(tmp_path)
    code = (
        "import sys; from outpost.cli import cli\n"
        f"cli(['verify', {str(bundle)!r}, '--trust', {str(pub)!r}], standalone_mode=False)\n"
        f"cli(['install', {str(archive)!r}, '--bundles', {str(tmp_path / 'dev')!r}, "
        f"'--trust', {str(pub)!r}], standalone_mode=False)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'cryptography'))\n"
        "print('nacl.signing' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "signature valid" in done.stdout
    assert done.stdout.strip().splitlines()[-2:] == ["[]", "True"]
    assert (tmp_path / "dev" / "current").is_symlink()


def test_a_device_without_cryptography_checks_signatures(tmp_path):
    bundle, archive, pub = _signed_release(tmp_path)
    shim = tmp_path / "shim" / "cryptography"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('cryptography is not on this device')")
    env = {"PYTHONPATH": os.pathsep.join([str(shim.parent), os.environ.get("PYTHONPATH", "")])}
    done = outpost("verify", str(bundle), "--trust", str(pub), env=env, timeout=60)
    assert done.returncode == 0 and "signature valid" in done.stdout, done.stderr[-2000:]
    dev = tmp_path / "dev"
    done = outpost("install", str(archive), "--bundles", str(dev), "--trust", str(pub), env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["retrieval"]["grounding_threshold"] = 0.0
    (bundle / "bundle.json").write_text(json.dumps(manifest, indent=2))
    done = outpost("verify", str(bundle), "--trust", str(pub), env=env, timeout=60)
    assert done.returncode == 1 and "the manifest was changed after signing" in done.stdout


def test_the_device_package_never_imports_cryptography():
    """Not even for type hints: cryptography is the build side's (export/ship/sign.py)."""
    named = [
        path.relative_to(ROOT).as_posix()
        for path in DEVICE_FILES
        if any(m.split(".")[0] == "cryptography" for m in imported_modules(path))
    ]
    assert not named, f"these import cryptography: {named}"
