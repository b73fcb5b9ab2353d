"""Issue 28, the device-install doors: rollback verifies its target (case 4), archive metadata is
bounded before it is read (case 5), `kit --force` replaces only a kit (case 11), the kit is a
trusted artifact (hashed wheels, `pip --require-hashes`, a signed kit.json checked by install.sh,
shell strings quoted), and the small ones: rollback on a read-only disk, "already installed" on
a full disk, `keygen -o /`, `kit --trust FIFO`. Everything here runs offline on fake bundles and
hand-made archives, each run bounded in time (and, for archives, in memory)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest
from test_hardening import one_error_line
from test_hostile import _state

from conftest import ROOT, outpost
from fake_bundle import FILES, manifest_dict
from outpost.runtime.bundle.install import install
from outpost.runtime.errors import InputError

# --- fake releases ----------------------------------------------------------------------------


def _archive(tmp_path: Path, name: str, seed: int, key: Path | None = None, extra=None) -> Path:
    """A small fake bundle (signed with `key` when given), packed as `outpost pack` does."""
    from outpost.export.ship.pack import pack
    from outpost.export.ship.sign import sign_manifest

    files = {**FILES, "model/model.onnx.data": random.Random(seed).randbytes(64 * 1024)}
    files.update(extra or {})
    root = tmp_path / f"src-{name}"
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "bundle.json").write_text(json.dumps(manifest_dict(files)))
    if key is not None:
        sign_manifest(root, key)
    archive = tmp_path / f"{name}.tar"
    pack(root, archive)
    return archive


def _flip(path: Path) -> None:
    """One byte changed, same size: a damaged (or tampered) file."""
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _unshare() -> list[str] | None:
    """`unshare -rm`: a mount namespace where this test may mount (None where it may not)."""
    tool = shutil.which("unshare")
    if tool and subprocess.run([tool, "-rm", "true"], capture_output=True).returncode == 0:
        return [tool, "-rm"]
    return None


# --- case 4: rollback verifies its target first -------------------------------------------------


def test_rollback_refuses_a_damaged_previous_release_and_keeps_current(tmp_path):
    a, b = _archive(tmp_path, "a", 1), _archive(tmp_path, "b", 2)
    dev = tmp_path / "dev"
    install(a, dev)
    install(b, dev)
    before = _state(dev)
    _flip(dev / before[1] / "model" / "model.onnx.data")
    line = one_error_line(
        outpost("rollback", "--bundles", str(dev), timeout=60), match="failed verification"
    )
    assert "model/model.onnx.data" in line and "current" in line
    assert _state(dev) == before  # `current` where it was
    install(a, dev)  # installing the release again repairs it; then rollback goes back to b
    assert outpost("rollback", "--bundles", str(dev), timeout=60).returncode == 0


def test_rollback_with_trust_checks_the_signature(signing_key, tmp_path):
    key, pub = Path(f"{signing_key}.key"), f"{signing_key}.pub"
    unsigned, signed = _archive(tmp_path, "u", 1), _archive(tmp_path, "s", 2, key)
    dev = tmp_path / "dev"
    install(unsigned, dev)
    install(signed, dev, [Path(pub)])
    before = _state(dev)
    for args, env in (((("--trust", pub)), None), ((), {"OUTPOST_TRUSTED_KEYS": pub})):
        done = outpost("rollback", "--bundles", str(dev), *args, env=env, timeout=60)
        one_error_line(done, match="not signed")
        assert _state(dev) == before
    install(_archive(tmp_path, "s2", 3, key), dev, [Path(pub)])  # current s2, previous s
    done = outpost("rollback", "--bundles", str(dev), "--trust", pub, timeout=60)
    assert done.returncode == 0, done.stderr
    assert _state(dev)[0] == before[0]  # back on the signed release


def test_rollback_on_a_read_only_disk_is_one_line(tmp_path):
    ns = _unshare()
    if ns is None:
        pytest.skip("this user may not make a mount namespace (unshare -rm)")
    a, b = _archive(tmp_path, "a", 1), _archive(tmp_path, "b", 2)
    dev = tmp_path / "dev"
    install(a, dev)
    install(b, dev)
    before = _state(dev)
    script = (
        f'mount --bind "{dev}" "{dev}" && mount -o remount,ro,bind "{dev}" && '
        f'exec "{sys.executable}" -m outpost.cli rollback --bundles "{dev}"'
    )
    done = subprocess.run(
        [*ns, "sh", "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    line = one_error_line(done, match="read-only")
    assert "internal error" not in line
    assert _state(dev) == before


# --- "already installed" before the free-space check ---------------------------------------------

FULL_DISK = (
    "import shutil, sys; "
    "shutil.disk_usage = lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 100, 100); "
    "from outpost.cli import main; sys.argv[0] = 'outpost'; main()"
)


def test_an_installed_bundle_on_a_full_disk_is_already_installed(tmp_path):
    a, b = _archive(tmp_path, "a", 1), _archive(tmp_path, "b", 2)
    dev = tmp_path / "dev"
    install(a, dev)
    install(b, dev)
    current, previous = _state(dev)

    def on_a_full_disk(archive):
        return subprocess.run(
            [sys.executable, "-c", FULL_DISK, "install", str(archive), "--bundles", str(dev)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )

    done = on_a_full_disk(b)  # `current` already: nothing to write at all
    assert done.returncode == 0, done.stderr
    assert "already installed" in done.stdout
    done = on_a_full_disk(a)  # `previous`: installed, so only the links change
    assert done.returncode == 0 and "already installed" in done.stdout, done.stderr
    assert _state(dev) == (previous, current)
    one_error_line(on_a_full_disk(_archive(tmp_path, "c", 3)), match="MB are free")


# --- case 5: archive metadata bounded before it is read -------------------------------------------

METADATA = {
    "pax": tarfile.XHDTYPE,
    "pax-global": tarfile.XGLTYPE,
    "gnu-long-name": tarfile.GNUTYPE_LONGNAME,
    "gnu-long-link": tarfile.GNUTYPE_LONGLINK,
}
HUGE = 200 * 10**6  # what the header claims and holds; the archive is ~200 KB compressed


def _metadata_bomb(path: Path, kind: int, size: int = HUGE) -> None:
    """A gzip archive whose first member is a metadata header of `size` bytes (of 'a')."""
    gnu = kind in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
    info = tarfile.TarInfo("././@LongLink" if gnu else "././@PaxHeader")
    info.type, info.size = kind, size
    head = info.tobuf(format=tarfile.GNU_FORMAT if gnu else tarfile.USTAR_FORMAT)
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    with open(path, "wb") as out:
        out.write(z.compress(head))
        body = b"" if gnu else b"%d path=" % size
        out.write(z.compress(body))
        block, left = b"a" * (1 << 20), size - len(body)
        while left > 0:
            out.write(z.compress(block[: min(left, len(block))]))
            left -= len(block)
        out.write(z.compress(b"\0" * (-size % 512) + b"\0" * 1024))
        out.write(z.flush())


def _pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    n = len(body) + 1
    while len(str(n).encode() + body) != n:
        n += 1
    return str(n).encode() + body


def _sparse_map_bomb(path: Path, entries: int = 30 * 10**6) -> None:
    """A PAX header (small) saying GNU sparse 1.0, then a member whose data starts with a sparse
    map of `entries` numbers: tarfile read the whole map into a list while iterating."""
    records = b"".join(
        _pax_record(k, v)
        for k, v in (
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.name", "bundle/x"),
            ("GNU.sparse.realsize", "1"),
        )
    )
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, len(records)
    member = tarfile.TarInfo("bundle/x")
    member.size = 2 * entries + 16
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    with open(path, "wb") as out:
        out.write(z.compress(pax.tobuf(format=tarfile.USTAR_FORMAT) + records))
        out.write(z.compress(b"\0" * (-len(records) % 512)))
        out.write(z.compress(member.tobuf(format=tarfile.USTAR_FORMAT)))
        out.write(z.compress(b"%d\n" % (entries // 2)))
        for _ in range(entries // 10**6):
            out.write(z.compress(b"0\n" * 10**6))
        out.write(z.flush())


def test_a_huge_sparse_map_is_refused_before_it_is_read(tmp_path):
    archive, bundles = tmp_path / "sparse.tar.gz", tmp_path / "dev"
    _sparse_map_bomb(archive)
    done, peak = _install_measured(archive, bundles)
    line = one_error_line(done, match="sparse")
    assert "internal error" not in line and len(done.stderr) < 600, done.stderr[:600]
    assert peak < 150, f"peak {peak:.0f} MB for a {archive.stat().st_size} byte archive"


PEAK = (
    "import resource, subprocess, sys; "
    "done = subprocess.run(sys.argv[1:], capture_output=True); "
    "sys.stderr.buffer.write(done.stderr[:100000]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
    "sys.exit(done.returncode)"
)


def _install_measured(archive: Path, bundles: Path):
    """`outpost install` in a subprocess; returns (CompletedProcess, its peak RSS in MB)."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK, sys.executable, "-m", "outpost.cli", "install"]
        + [str(archive), "--bundles", str(bundles)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    return done, int(done.stdout.strip().splitlines()[-1]) / 1024


@pytest.mark.parametrize("name", sorted(METADATA))
def test_a_huge_metadata_header_is_refused_before_it_is_read(tmp_path, name):
    archive, bundles = tmp_path / "bomb.tar.gz", tmp_path / "dev"
    _metadata_bomb(archive, METADATA[name])
    assert archive.stat().st_size < 1_000_000
    done, peak = _install_measured(archive, bundles)
    line = one_error_line(done, match="header")
    assert "internal error" not in line and len(done.stderr) < 600, done.stderr[:600]
    assert peak < 150, f"peak {peak:.0f} MB for a {archive.stat().st_size} byte archive"
    assert not (bundles / "current").exists()


def test_a_chain_of_metadata_headers_is_refused(tmp_path):
    """Thousands of small PAX headers in a row: tarfile recursed once per header."""
    archive, bundles = tmp_path / "chain.tar", tmp_path / "dev"
    raw = io.BytesIO()
    for i in range(5000):
        record = b"comment=%d\n" % i
        record = b"%d " % (len(record) + 4) + record
        info = tarfile.TarInfo("././@PaxHeader")
        info.type, info.size = tarfile.XHDTYPE, len(record)
        raw.write(info.tobuf(format=tarfile.USTAR_FORMAT))
        raw.write(record + b"\0" * (-len(record) % 512))
    archive.write_bytes(raw.getvalue() + b"\0" * 1024)
    line = one_error_line(outpost("install", str(archive), "--bundles", str(bundles), timeout=60))
    assert "internal error" not in line and "in a row" in line, line


def test_an_archive_with_long_names_still_installs(tmp_path):
    """`outpost pack` writes a (small) PAX header for a name over 100 characters: still fine."""
    long = "docs/" + "a" * 180 + ".txt"
    archive = _archive(tmp_path, "long", 1, extra={long: b"text"})
    with tarfile.open(archive) as tar:
        assert f"bundle/{long}" in tar.getnames()
    done = outpost("install", str(archive), "--bundles", str(tmp_path / "dev"), timeout=60)
    assert done.returncode == 0, done.stderr


# --- small ones: keygen -o /, kit --trust FIFO ---------------------------------------------------


@pytest.mark.parametrize("prefix", ["/", ".", ".."])
def test_keygen_to_a_folder_name_is_one_line(tmp_path, prefix):
    done = subprocess.run(
        [sys.executable, "-m", "outpost.cli", "keygen", "-o", prefix],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    line = one_error_line(done, code=2, match="-o")
    assert "internal error" not in line and "prefix" in line
    assert not list(tmp_path.iterdir())


NO_INDEX = {"PIP_INDEX_URL": "http://127.0.0.1:9/nothing", "PIP_NO_INDEX": "1"}


def test_kit_trust_that_is_a_fifo_names_what_it_is(tmp_path):
    fifo = tmp_path / "release.pub"
    os.mkfifo(fifo)
    done = outpost(
        "kit", "--out", str(tmp_path / "k"), "--trust", str(fifo), env=NO_INDEX, timeout=60
    )
    line = one_error_line(done, match="FIFO")
    assert "no such" not in line
    text = tmp_path / "notes.pub"
    text.write_text("not a key")
    done = outpost(
        "kit", "--out", str(tmp_path / "k"), "--trust", str(text), env=NO_INDEX, timeout=60
    )
    one_error_line(done, match="not a readable public key")
    assert not (tmp_path / "k").exists()


# --- case 11: kit --force replaces only a kit ------------------------------------------------------


def test_kit_force_refuses_a_folder_that_is_not_a_kit(tmp_path):
    mine = tmp_path / "work"
    mine.mkdir()
    (mine / "thesis.docx").write_text("years of work")
    done = outpost("kit", "--out", str(mine), "--force", env=NO_INDEX, timeout=120)
    one_error_line(done, match="not a kit made by `outpost kit`")
    assert (mine / "thesis.docx").read_text() == "years of work"
    a_file = tmp_path / "file"
    a_file.write_text("mine")
    done = outpost("kit", "--out", str(a_file), "--force", env=NO_INDEX, timeout=120)
    one_error_line(done, match="not a kit")
    assert a_file.read_text() == "mine"


def test_kit_force_refuses_a_kit_holding_a_users_file(tmp_path, signing_key):
    from outpost.export.ship.kit import check_replaceable

    kit = _fake_kit(tmp_path, signing_key)
    check_replaceable(kit)  # a kit as `outpost kit` wrote it may be replaced
    (kit / "wheels" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="wheels/notes.txt"):
        check_replaceable(kit)
    done = outpost("kit", "--out", str(kit), "--force", env=NO_INDEX, timeout=120)
    one_error_line(done, match="wheels/notes.txt")
    assert (kit / "wheels" / "notes.txt").read_text() == "mine"


# --- the kit as a trusted artifact -----------------------------------------------------------------

HOSTILE_KEY = 'rel\'ease $(touch PWNED) "`touch PWNED2`".pub'
HOSTILE_QUESTION = 'It\'s "$(touch PWNED3)" `touch PWNED4` $HOME?'
STUB = """import json, os, sys


def main():
    with open(os.environ["OUTPOST_STUB_LOG"], "a") as f:
        f.write(json.dumps(sys.argv[1:]) + "\\n")
"""


def _wheel(folder: Path, name: str = "outpost_llm", version: str = "0.0.1") -> Path:
    """A real (tiny) wheel: an `outpost` console script that logs its arguments."""
    info = f"{name}-{version}.dist-info"
    files = {
        "outpost_stub.py": STUB.encode(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": b"[console_scripts]\noutpost = outpost_stub:main\n",
    }
    record = []
    for rel, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{rel},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for rel, data in files.items():
            z.writestr(rel, data)
    return path


def _bundled_pip() -> Path:
    import ensurepip

    found = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
    if not found:
        pytest.skip("this Python has no bundled pip wheel to build an offline kit with")
    return found[-1]


def _fake_kit(tmp_path: Path, signing_key: Path, sign: bool = True, key_name: str = "release.pub"):
    """A kit as `outpost kit` writes it, offline: a stub Outpost wheel instead of the resolved
    ones, the pip wheel Python ships, a placeholder bundle archive; kit.json, requirements,
    install.sh and kit.sig written by the real code."""
    from outpost.export.config import KitConfig
    from outpost.export.ship.kit import write_kit

    key = tmp_path / key_name
    shutil.copyfile(f"{signing_key}.pub", key)
    kit = tmp_path / "kit"
    (kit / "wheels").mkdir(parents=True)
    (kit / "tools").mkdir()
    _wheel(kit / "wheels")
    shutil.copy2(_bundled_pip(), kit / "tools")
    (kit / "bundle.tar").write_bytes(b"placeholder archive")
    config = KitConfig(
        out=str(kit),
        platform=f"manylinux_2_28_{platform.machine()}",
        python=f"{sys.version_info[0]}.{sys.version_info[1]}",
        bundle=str(tmp_path / "bundle"),
        trust=str(key),
        sign=f"{signing_key}.key" if sign else None,
        question=HOSTILE_QUESTION,
    )
    write_kit(kit, config, dropped=[], saved=0)
    return kit


def _run_install_sh(kit: Path, prefix: Path, cwd: Path, env: dict | None = None):
    log = cwd / "stub.log"
    log.unlink(missing_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    base.pop("OUTPOST_TRUSTED_KEYS", None)
    done = subprocess.run(
        ["sh", str(kit / "install.sh"), str(prefix)],
        env={
            **base,
            **NO_INDEX,
            "PYTHON": sys.executable,
            "OUTPOST_STUB_LOG": str(log),
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done, calls


def test_kit_json_hashes_every_file_and_install_sh_requires_them(signing_key, tmp_path):
    kit = _fake_kit(tmp_path, signing_key)
    manifest = json.loads((kit / "kit.json").read_text())
    for name, entry in manifest["wheels"].items():
        assert entry["sha256"] == hashlib.sha256((kit / "wheels" / name).read_bytes()).hexdigest()
    on_disk = {p.relative_to(kit).as_posix() for p in kit.rglob("*") if p.is_file()} - {
        "kit.json",
        "kit.sig",
    }
    assert set(manifest["files"]) == on_disk
    for rel, entry in manifest["files"].items():
        assert entry["sha256"] == hashlib.sha256((kit / rel).read_bytes()).hexdigest(), rel
    requirements = (kit / "requirements.txt").read_text().splitlines()
    assert requirements == [
        f"{name.split('-')[0]}=={name.split('-')[1]} --hash=sha256:{entry['sha256']}"
        for name, entry in manifest["wheels"].items()
    ]
    script = (kit / "install.sh").read_text()
    assert "--require-hashes" in script and "wheels/*.whl" not in script


@pytest.mark.slow
def test_install_sh_quotes_every_name_and_installs_with_hashes(signing_key, tmp_path):
    kit = _fake_kit(tmp_path, signing_key, key_name=HOSTILE_KEY)
    work, prefix = tmp_path / "work", tmp_path / "device"
    work.mkdir()
    subprocess.run(["sh", "-n", str(kit / "install.sh")], check=True, timeout=30)
    done, calls = _run_install_sh(kit, prefix, work)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not list(work.glob("PWNED*")) and not list(tmp_path.glob("PWNED*"))
    trust = ["--trust", str(kit / "keys" / HOSTILE_KEY)]
    assert calls[0] == [
        "install",
        str(kit / "bundle.tar"),
        "--bundles",
        str(prefix / "bundles"),
        *trust,
    ]
    asked = next(c for c in calls if c[0] == "ask")
    assert asked[2] == HOSTILE_QUESTION and asked[-2:] == trust
    assert (prefix / "keys" / HOSTILE_KEY).is_file()  # the device's trust for later kits
    assert "signed by key" in done.stderr


def test_install_sh_refuses_a_kit_changed_after_signing(signing_key, tmp_path):
    kit = _fake_kit(tmp_path, signing_key)
    wheel = next((kit / "wheels").glob("*.whl"))
    prefix = tmp_path / "device"

    # A wheel swapped, kit.json untouched: the hash check names it; nothing is installed.
    original = wheel.read_bytes()
    wheel.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    done, calls = _run_install_sh(kit, prefix, tmp_path)
    one_error_line(done, match=f"wheels/{wheel.name}")
    assert not prefix.exists() and not calls

    # ... and kit.json and requirements.txt rewritten to match: the signature no longer does.
    manifest = json.loads((kit / "kit.json").read_text())
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    old = manifest["wheels"][wheel.name]["sha256"]
    requirements = (kit / "requirements.txt").read_text().replace(old, digest)
    (kit / "requirements.txt").write_text(requirements)
    for rel, data in (
        (f"wheels/{wheel.name}", wheel.read_bytes()),
        ("requirements.txt", requirements.encode()),
    ):
        manifest["files"][rel] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    manifest["wheels"][wheel.name]["sha256"] = digest
    (kit / "kit.json").write_text(json.dumps(manifest, indent=2) + "\n")
    done, calls = _run_install_sh(kit, prefix, tmp_path)
    one_error_line(done, match="does not match kit.json")
    assert not prefix.exists() and not calls


@pytest.mark.slow
def test_install_sh_checks_the_kit_against_the_devices_keys(signing_key, tmp_path):
    other = tmp_path / "other"
    assert outpost("keygen", "-o", str(other)).returncode == 0
    kit = _fake_kit(tmp_path, signing_key)
    prefix = tmp_path / "device"
    done, calls = _run_install_sh(kit, prefix, tmp_path, {"OUTPOST_TRUSTED_KEYS": f"{other}.pub"})
    one_error_line(done, match="not trusted")
    assert not prefix.exists() and not calls
    done, _ = _run_install_sh(kit, prefix, tmp_path)  # first install: the kit's key, then kept
    assert done.returncode == 0, done.stderr[-2000:]
    # Later kits are checked against the key the device keeps: an unsigned one is refused.
    shutil.rmtree(kit)
    kit = _fake_kit(tmp_path, signing_key, sign=False)
    done, calls = _run_install_sh(kit, prefix, tmp_path)
    one_error_line(done, match="not signed")
    assert not calls


def test_kit_sign_must_be_the_key_the_device_trusts(signing_key, tmp_path):
    other = tmp_path / "other"
    assert outpost("keygen", "-o", str(other)).returncode == 0
    done = outpost(
        "kit", "--out", str(tmp_path / "k"), "--trust", f"{other}.pub", "--sign",
        f"{signing_key}.key", env=NO_INDEX, timeout=60,
    )  # fmt: skip
    one_error_line(done, code=2, match="is not the key of --trust")
    assert not (tmp_path / "k").exists()


def test_the_kits_own_ed25519_check_agrees_with_cryptography(signing_key):
    from cryptography.hazmat.primitives import serialization

    from outpost.export.ship import kit_check

    private = serialization.load_pem_private_key(Path(f"{signing_key}.key").read_bytes(), None)
    public = kit_check.public_key_bytes(Path(f"{signing_key}.pub").read_bytes())
    rng = random.Random(5)
    for n in (0, 1, 64, 1000):
        message = rng.randbytes(n)
        signature = private.sign(message)
        assert kit_check.ed25519_verify(public, message, signature)
        assert not kit_check.ed25519_verify(public, message + b"x", signature)
        bad = bytearray(signature)
        bad[rng.randrange(64)] ^= 1 << rng.randrange(8)
        assert not kit_check.ed25519_verify(public, message, bytes(bad))
