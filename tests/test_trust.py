"""Trustworthy bundles, on real bundles and real processes: verification, signatures, index
binding, safe packing, power-loss-safe install and rollback, and fault injection.

The counts of faults injected are printed (run with -s) and recorded in docs/reliability.md.
"""

import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from conftest import EXAMPLES, ROOT, export, outpost
from fake_bundle import manifest_dict
from outpost.runtime.bundle.install import Limits, install
from outpost.runtime.bundle.open import open_bundle, open_pinned
from outpost.runtime.bundle.verify import verify_on_open as verify
from outpost.runtime.errors import BundleError

pytestmark = pytest.mark.slow
PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
ALLOWED = {".json", ".onnx", ".data", ".usearch", ".sqlite", ".jinja", ".sig"}


def link_copy(src, dst, copy=()):
    """Hard-link copy of a bundle; files in `copy` are real copies that a test may damage."""
    shutil.copytree(src, dst, copy_function=os.link)
    for rel in copy:
        (dst / rel).unlink()
        shutil.copyfile(src / rel, dst / rel)
    return dst


def manifest(bundle):
    return json.loads((bundle / "bundle.json").read_text())


def test_verify_passes_on_a_fresh_signed_bundle(tiny_bundle, signing_key):
    done = outpost("verify", str(tiny_bundle), "--trust", f"{signing_key}.pub")
    assert done.returncode == 0, done.stderr
    assert "signature valid" in done.stdout


def test_every_flipped_byte_is_named(tiny_bundle, tmp_path):
    rng = random.Random(7)
    files = sorted(manifest(tiny_bundle)["files"])
    for i, rel in enumerate(files):
        copy = link_copy(tiny_bundle, tmp_path / f"flip{i}", copy=[rel])
        data = bytearray((copy / rel).read_bytes())
        at = rng.randrange(len(data))
        data[at] ^= 0xFF
        (copy / rel).write_bytes(bytes(data))
        done = outpost("verify", str(copy), "--json")
        assert done.returncode == 1
        report = json.loads(done.stdout)
        assert [(p["path"], p["kind"]) for p in report["problems"]] == [(rel, "changed")], (
            rel,
            report,
        )
    print(f"flipped bytes: {len(files)} files, {len(files)} named")


def test_truncated_missing_and_unexpected_files_are_named(tiny_bundle, tmp_path):
    files = sorted(manifest(tiny_bundle)["files"])
    for i, rel in enumerate(files):
        copy = link_copy(tiny_bundle, tmp_path / f"trunc{i}", copy=[rel])
        size = (copy / rel).stat().st_size
        with open(copy / rel, "r+b") as f:
            f.truncate(size // 2)
        done = outpost("verify", str(copy))
        assert (
            done.returncode == 1
            and f"changed  {rel}  ({size // 2} bytes, expected {size})" in done.stdout
        )
    copy = link_copy(tiny_bundle, tmp_path / "mixed")
    (copy / "index.usearch").unlink()
    (copy / "model" / "notes.txt").write_text("left here")
    done = outpost("verify", str(copy))
    assert "missing  index.usearch" in done.stdout and "unexpected  model/notes.txt" in done.stdout
    ask = outpost("ask", str(copy), "What?")
    assert ask.returncode == 1 and "index.usearch is missing" in ask.stderr
    print(f"truncated files: {len(files)}, all named")


def test_runtime_hash_cache_cannot_be_fooled(tiny_bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("OUTPOST_CACHE", str(tmp_path / "cache"))
    copy = link_copy(tiny_bundle, tmp_path / "c", copy=["chunks.sqlite"])

    def verify_on_open(path, _manifest, **kw):  # a fresh open, as each `ask` does
        b = open_pinned(path)
        try:
            return verify(b, **kw)
        finally:
            b.close()

    m = open_bundle(copy).manifest
    assert verify_on_open(copy, m) is True  # first open: full sha256
    assert verify_on_open(copy, m) is False  # same files, same stamps: no hashing
    store = copy / "chunks.sqlite"
    before = store.stat()
    data = bytearray(store.read_bytes())
    data[200] ^= 0xFF
    store.write_bytes(bytes(data))
    os.utime(store, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size, same mtime
    with pytest.raises(BundleError, match="chunks.sqlite has changed"):
        verify_on_open(copy, m)
    # A verified bundle's copy elsewhere is hashed again, not trusted by its content id.
    store.unlink()
    shutil.copyfile(tiny_bundle / "chunks.sqlite", store)
    assert verify_on_open(copy, m) is True
    assert verify_on_open(copy, m) is False
    assert verify_on_open(copy, m, always_hash=True) is True  # trusted keys: every open hashes
    # A copy elsewhere, with the same bundle.json, is hashed on its own first open.
    second = tmp_path / "second"
    shutil.copytree(copy, second)
    (second / "chunks.sqlite").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="chunks.sqlite has changed"):
        verify_on_open(second, m)


def test_signatures_refuse_unsigned_wrongly_signed_and_edited_bundles(
    tiny_bundle, signing_key, tmp_path
):
    trust = f"{signing_key}.pub"
    unsigned = link_copy(tiny_bundle, tmp_path / "unsigned")
    (unsigned / "bundle.sig").unlink()
    done = outpost("ask", str(unsigned), "What?", "--trust", trust)
    assert done.returncode == 1 and "the bundle is not signed" in done.stderr
    assert (
        outpost("ask", str(unsigned), "What grease?", "--max-new-tokens", "2").returncode == 0
    )  # no keys: allowed

    other = tmp_path / "other"
    assert outpost("keygen", "-o", str(other)).returncode == 0
    assert (
        "already exists" in outpost("keygen", "-o", str(other)).stderr
    )  # keys are never overwritten
    done = outpost("verify", str(tiny_bundle), "--trust", f"{other}.pub")
    assert done.returncode == 1 and "which is not trusted here" in done.stdout

    edited = link_copy(tiny_bundle, tmp_path / "edited", copy=["bundle.json"])
    m = manifest(edited)
    m["retrieval"]["grounding_threshold"] = 0.0
    (edited / "bundle.json").write_text(json.dumps(m, indent=2))
    done = outpost("ask", str(edited), "What?", "--trust", trust)
    assert done.returncode == 1 and "the manifest was changed after signing" in done.stderr


def test_index_is_bound_to_its_embedder_and_store(tiny_bundle, tmp_path):
    copy = link_copy(tiny_bundle, tmp_path / "rebound", copy=["bundle.json"])
    m = manifest(copy)
    m["embedder"]["dim"] = 768
    m["store"]["count"] += 1
    (copy / "bundle.json").write_text(json.dumps(m))
    done = outpost("ask", str(copy), "What?")
    assert done.returncode == 1
    assert "embedder dim 768, index built for 384" in done.stderr
    assert f"{m['store']['count']} chunks, index holds {m['index']['count']}" in done.stderr


def test_no_file_in_a_bundle_is_a_pickle(tiny_bundle):
    for f in sorted(tiny_bundle.rglob("*")):
        if not f.is_file():
            continue
        assert f.suffix in ALLOWED, f
        head = f.read_bytes()[:16]
        assert not head.startswith(PICKLE_MAGIC), f
        if f.suffix == ".sqlite":
            assert head == b"SQLite format 3\x00"
        if f.suffix == ".json":
            json.loads(f.read_text())


def _crafted(path, name, kind="file", size=4):
    with tarfile.open(path, "w") as tar:
        head = json.dumps(manifest_dict()).encode()  # a valid manifest first, as `pack` writes
        ok = tarfile.TarInfo("bundle/bundle.json")
        ok.size = len(head)
        tar.addfile(ok, io.BytesIO(head))
        info = tarfile.TarInfo(name)
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            info.type, info.linkname = tarfile.LNKTYPE, "bundle/bundle.json"
        elif kind == "device":
            info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
        elif kind == "fifo":
            info.type = tarfile.FIFOTYPE
        info.size = size if kind == "file" else 0
        tar.addfile(info, io.BytesIO(b"x" * info.size) if kind == "file" else None)


@pytest.mark.parametrize(
    "name, kind, message",
    [
        ("bundle/../../evil.txt", "file", "points outside the bundle"),
        ("/tmp/evil-absolute.txt", "file", "points outside the bundle"),
        ("bundle/model/link", "symlink", "is a link"),
        ("bundle/model/hard", "hardlink", "is a link"),
        ("bundle/dev", "device", "device or special file"),
        ("bundle/pipe", "fifo", "device or special file"),
        ("elsewhere/file.txt", "file", "not under bundle/"),
        ("bundle/huge.bin", "file", "over the per-file limit"),
    ],
)
def test_crafted_archives_are_refused(tmp_path, name, kind, message):
    archive = tmp_path / "bad.tar"
    _crafted(archive, name, kind, size=8192 if name.endswith("huge.bin") else 4)
    bundles = tmp_path / "bundles"
    with pytest.raises(BundleError, match=message):
        install(archive, bundles, limits=Limits(max_file_bytes=4096))
    assert not (tmp_path / "evil.txt").exists() and not os.path.exists("/tmp/evil-absolute.txt")
    assert not (bundles / "current").exists()
    assert list(bundles.glob(".incoming-*")) == []


def test_install_rollback_and_kill_during_install(
    tiny_bundle, tiny_bundle_b, signing_key, tmp_path
):
    trust = f"{signing_key}.pub"
    first = tmp_path / "first.tar"
    assert outpost("pack", str(tiny_bundle), "-o", str(first)).returncode == 0
    second = tmp_path / "second.tar"
    assert outpost("pack", str(tiny_bundle_b), "-o", str(second)).returncode == 0
    bundles = tmp_path / "device"
    done = outpost("install", str(first), "--bundles", str(bundles), "--trust", trust)
    assert done.returncode == 0, done.stderr
    first_target = os.readlink(bundles / "current")

    rng = random.Random(11)
    kills = outcomes_old = outcomes_new = 0
    for _ in range(10):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "outpost.cli",
                "install",
                str(second),
                "--bundles",
                str(bundles),
                "--trust",
                trust,
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.05, 0.6))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        target = os.readlink(bundles / "current")
        outcomes_old += target == first_target
        outcomes_new += target != first_target
        ask = outpost(
            "ask", str(bundles), "What is the belt speed?", "--json", "--max-new-tokens", "2"
        )
        assert ask.returncode == 0, ask.stderr  # whatever happened, the device answers
        assert outpost("verify", str(bundles)).returncode == 0
        if target != first_target:  # the new one got in: go back for the next round
            assert outpost("rollback", "--bundles", str(bundles)).returncode == 0
            assert os.readlink(bundles / "current") == first_target
    print(
        f"install killed {kills} times: {outcomes_old} left the old bundle, {outcomes_new} the new one"
    )

    done = outpost("install", str(second), "--bundles", str(bundles), "--trust", trust)
    assert done.returncode == 0
    assert os.readlink(bundles / "previous") == first_target
    assert outpost("rollback", "--bundles", str(bundles)).returncode == 0
    assert os.readlink(bundles / "current") == first_target

    untrusted = tmp_path / "unsigned.tar"
    shutil.copytree(tiny_bundle, tmp_path / "u")
    (tmp_path / "u" / "bundle.sig").unlink()
    assert outpost("pack", str(tmp_path / "u"), "-o", str(untrusted)).returncode == 0
    done = outpost("install", str(untrusted), "--bundles", str(bundles), "--trust", trust)
    assert done.returncode == 1 and "not signed" in done.stderr
    assert os.readlink(bundles / "current") == first_target


def test_killed_export_leaves_nothing_or_a_valid_bundle(tiny_phi3, tmp_path):
    rng = random.Random(3)
    out = tmp_path / "bundle"
    delays = sorted(rng.uniform(1, 28) for _ in range(4))
    for delay in delays:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "outpost.cli",
                "export",
                str(EXAMPLES / "docs" / "press"),
                "--out",
                str(out),
                "--base",
                str(tiny_phi3),
                "--force",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        finished = proc.poll() is not None
        if not finished:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        if out.exists():  # complete and valid, never half-written
            assert outpost("verify", str(out)).returncode == 0
    done = export(EXAMPLES / "docs" / "press", out, "--base", str(tiny_phi3), "--force")
    assert done.returncode == 0, done.stderr[-1500:]
    assert outpost("verify", str(out)).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # stale temp folders cleaned
    print(
        f"export killed at {', '.join(f'{d:.1f}s' for d in delays)}: target absent or valid each time"
    )
