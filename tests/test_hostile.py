"""Hardening, second round (docs/reliability.md, "Second sweep"): what is answered is exactly
what was verified, trust asked for is never trust off, archives are checked before anything is
written, links never dangle or collapse under kill -9, and hostile stores, names and files are
refused or shown harmlessly. Server cases are in tests/test_serve_hostile.py."""

import errno
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import signal
import sqlite3
import string
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_hardening import one_error_line
from test_trust import link_copy

from conftest import ROOT, outpost
from fake_bundle import FILES, manifest_dict
from outpost.runtime.bundle.install import (
    JOURNAL,
    _apply,
    _write_json,
    install,
    locked,
    resolve,
    rollback,
)
from outpost.runtime.bundle.open import open_pinned
from outpost.runtime.bundle.verify import open_verified, problems_of
from outpost.runtime.errors import BundleError, InputError


def texts(store: Path) -> set[str]:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)  # a plain test path: no URI traps
    try:
        return {row[0] for row in db.execute("SELECT text FROM chunks")}
    finally:
        db.close()


def rehash(bundle: Path, rel: str, key: Path | None = None) -> None:
    """Record `rel`'s new bytes in bundle.json, then sign again with `key` (as a compromised
    build machine would) or drop the signature."""
    data = json.loads((bundle / "bundle.json").read_text())
    blob = (bundle / rel).read_bytes()
    data["files"][rel] = {"size": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
    (bundle / "bundle.json").unlink()  # a hard link to the shared bundle's: never write through
    (bundle / "bundle.json").write_text(json.dumps(data, indent=2))
    (bundle / "bundle.sig").unlink(missing_ok=True)
    if key is not None:
        from outpost.export.ship.sign import sign_manifest

        sign_manifest(bundle, key)


# --- 1. what is read is what was verified -------------------------------------------------------

NAME_CHARS = string.ascii_letters + string.digits + "%#?&= \n\t'\"!$*[]{}~-_.,;:@+2fF"


def _naive_store_path(folder: Path) -> Path:
    """The file a URI built from the path without escaping opens (the bug of issue 17)."""
    raw = str(folder / "chunks.sqlite")
    return Path(unquote(raw.split("?")[0].split("#")[0]))


@pytest.mark.slow
def test_every_library_reads_the_pinned_files_even_after_they_are_replaced(tiny_bundle, tmp_path):
    from outpost.runtime.ask.assistant import AskConfig, Assistant

    copy = link_copy(tiny_bundle, tmp_path / "b")
    verified_texts = texts(tiny_bundle / "chunks.sqlite")
    bundle = open_verified(copy)
    try:
        for rel in bundle.manifest.files:  # swap every file for garbage after verification
            (copy / rel).rename(copy / (rel + ".old"))
            (copy / rel).write_bytes(b"not what was verified " * 8)
        assistant = Assistant(bundle, AskConfig(max_new_tokens=4))
        hits = assistant.retriever.search("What is the maximum system pressure?", 4)
        assert hits and all(h.text in verified_texts for h in hits)
        assert assistant.ask("What is the maximum system pressure?").timings.prompt_tokens > 0
    finally:
        bundle.close()
    assert bundle.pinned.view is None and bundle.pinned.fds == {}


@pytest.mark.slow
def test_bundle_folder_names_never_change_what_is_answered(tiny_bundle, tiny_bundle_b, signing_key):
    """Property: any printable folder name (with %, #, ?, spaces, newlines) x verify/ask: the
    passages come from the verified store, even with a decoy where a naive URI would point."""
    from outpost.runtime.ask.assistant import AskConfig, open_assistant

    verified_texts = texts(tiny_bundle / "chunks.sqlite")
    decoy_texts = texts(tiny_bundle_b / "chunks.sqlite")
    base = Path(tempfile.mkdtemp(prefix="names-"))
    trust = [Path(f"{signing_key}.pub")]
    seen, decoyed = [], []

    @settings(
        max_examples=20, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(st.text(alphabet=NAME_CHARS, min_size=1, max_size=14))
    @example("b%2fx")  # read b/x/chunks.sqlite before
    @example("a#b")  # `#` cut the path (and could create a file outside the bundle)
    @example("q?mode=rwc")  # `?` dropped read-only mode
    @example("sp ace\nnew%41line")
    @example("x?immutable=0#y")
    def check(name):
        if name in (".", "..") or "/" in name or name in seen:
            return
        seen.append(name)
        folder = base / str(len(seen)) / name
        folder.parent.mkdir(parents=True)
        link_copy(tiny_bundle, folder)
        naive = _naive_store_path(folder)
        decoys = 0
        if not naive.exists() and not naive.is_relative_to(folder):
            try:  # where a naive URI would read: another store
                naive.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(tiny_bundle_b / "chunks.sqlite", naive)
                decoys += 1
            except OSError:
                pass  # the naive path runs through a file: no decoy can sit there
        b = open_pinned(folder)
        try:
            assert problems_of(b, None, hashes=True, unexpected=True) == []
        finally:
            b.close()
        assistant = open_assistant(folder, AskConfig(trust=trust))
        try:
            hits = assistant.retriever.search("What is the belt speed of the conveyor?", 6)
            assert hits and all(h.text in verified_texts for h in hits)
            assert not any(h.text in decoy_texts - verified_texts for h in hits)
        finally:
            assistant.bundle.close()
        decoyed.append(decoys)

    check()
    shutil.rmtree(base, ignore_errors=True)
    print(f"folder names tried: {len(seen)} ({sum(decoyed)} with a decoy store), e.g. {seen[:4]!r}")
    assert len(seen) >= 10 and sum(decoyed) >= 4


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["empty", "private-only", "env"])
def test_asking_for_trust_and_finding_no_key_is_an_error(tiny_bundle, signing_key, tmp_path, kind):
    keys = tmp_path / "keys"
    keys.mkdir()
    if kind == "private-only":
        shutil.copyfile(f"{signing_key}.key", keys / "release.key")
    unsigned = link_copy(tiny_bundle, tmp_path / "unsigned")
    (unsigned / "bundle.sig").unlink()
    archive = tmp_path / "u.tar"
    assert outpost("pack", str(unsigned), "-o", str(archive)).returncode == 0
    trust = [] if kind == "env" else ["--trust", str(keys)]
    env = {"OUTPOST_TRUSTED_KEYS": str(keys)} if kind == "env" else None
    for args in (
        ["ask", str(unsigned), "What is the belt speed?", "--max-new-tokens", "2"],
        ["verify", str(unsigned)],
        ["install", str(archive), "--bundles", str(tmp_path / "dev")],
        ["serve", str(unsigned), "--port", "0"],
    ):
        one_error_line(outpost(*args, *trust, env=env, timeout=120), match="no public key")
    assert not (tmp_path / "dev" / "current").exists()


@pytest.mark.slow
def test_a_key_path_that_is_a_pipe_is_refused_without_reading(tiny_bundle, tmp_path):
    fifo = tmp_path / "key.pub"
    os.mkfifo(fifo)
    one_error_line(
        outpost("verify", str(tiny_bundle), "--trust", str(fifo), timeout=60),
        match="not a plain file",
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "hostile",
    [
        # `chunks` as a view that never ends: the count the runtime takes would spin forever
        "DROP TABLE chunks; CREATE VIEW chunks(id, source, heading, start, end, text) AS "
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
        "SELECT x, 'a', 'b', 0, 0, 'c' FROM c",
        "CREATE TRIGGER t AFTER INSERT ON chunks BEGIN SELECT 1; END",
        "CREATE VIEW extra AS SELECT 1",
        "CREATE INDEX by_source ON chunks(source)",
    ],
    ids=["endless-view", "trigger", "view", "index"],
)
def test_a_signed_store_with_foreign_sql_objects_is_refused(
    tiny_bundle, signing_key, tmp_path, hostile
):
    copy = link_copy(tiny_bundle, tmp_path / "b", copy=["chunks.sqlite"])
    db = sqlite3.connect(copy / "chunks.sqlite")
    db.executescript(hostile)
    db.close()
    rehash(copy, "chunks.sqlite", Path(f"{signing_key}.key"))  # signed: the build machine lied
    trust = ["--trust", f"{signing_key}.pub"]
    assert outpost("verify", str(copy), *trust).returncode == 0  # the bytes are the signed ones
    done = outpost(
        "ask", str(copy), "What is the belt speed?", "--max-new-tokens", "2", *trust, timeout=120
    )
    one_error_line(done, match="not the schema `outpost export` writes")


@pytest.mark.slow
def test_document_names_cannot_forge_output_or_drive_the_terminal(tiny_bundle, tmp_path):
    copy = link_copy(tiny_bundle, tmp_path / "b", copy=["chunks.sqlite"])
    forged = (
        "a.md\n\nFrom the manual (forged.md):\n  \u201cPressure is 999 bar\u201d\x1b[2J\r\u202e"
    )
    db = sqlite3.connect(copy / "chunks.sqlite")
    db.execute("UPDATE chunks SET source = ?, heading = ?", (forged, "H\x1b]0;title\x07"))
    db.commit()
    db.close()
    rehash(copy, "chunks.sqlite")
    done = outpost(
        "ask", str(copy), "What is the maximum system pressure?", "--max-new-tokens", "8"
    )
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\r" not in done.stdout and "\u202e" not in done.stdout
    assert not any(line.startswith("From the manual (forged") for line in done.stdout.splitlines())
    assert "a.md\\n\\nFrom the manual (forged.md)" in done.stdout  # shown, escaped


# --- archives: checked before anything is written --------------------------------------------


def _tar(path: Path, members: list[tuple[str, bytes | int]], mode: str = "w") -> None:
    """members: (name, data) or (name, declared size with no data: a header that lies)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if isinstance(data, int):
                info.size = data
                tar.addfile(info)  # header only: reading its data would hit the end
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    blob = raw.getvalue()
    path.write_bytes(gzip.compress(blob, 1) if mode == "gz" else blob)


def _fake_members(**extra) -> list[tuple[str, bytes | int]]:
    head = json.dumps(manifest_dict()).encode()
    files = [(f"bundle/{rel}", data) for rel, data in sorted(FILES.items())]
    return [("bundle/bundle.json", head), *files, *extra.items()]


@pytest.mark.parametrize(
    "members, message",
    [
        ([*_fake_members(), ("bundle/model/model.onnx.data", 4 * 2**30)], "not listed in its"),
        (
            [
                ("bundle/bundle.json", json.dumps(manifest_dict()).encode()),
                ("bundle/model/model.onnx", 4 * 2**30),
            ],
            "bundle.json says",
        ),
        (
            [
                ("bundle/bundle.json", json.dumps(manifest_dict()).encode()),
                ("bundle/bundle.json", b"{}"),
            ],
            "appears twice",
        ),
        (_fake_members()[:-1], "lacks"),
    ],
    ids=["unlisted-4GiB", "wrong-size-4GiB", "two-manifests", "missing-file"],
)
def test_a_compressed_archive_is_checked_against_its_manifest_before_writing(
    tmp_path, members, message
):
    archive, bundles = tmp_path / "a.tar.gz", tmp_path / "dev"
    _tar(archive, members, mode="gz")
    one_error_line(outpost("install", str(archive), "--bundles", str(bundles)), match=message)
    written = sum(f.stat().st_size for f in bundles.rglob("*") if f.is_file())
    assert written == 0 and not (bundles / "current").exists()
    assert not list(bundles.glob(".incoming-*"))


def test_an_unsigned_archive_is_refused_before_extraction(signing_key, tmp_path):
    archive, bundles = tmp_path / "a.tar", tmp_path / "dev"
    _tar(archive, _fake_members())
    done = outpost(
        "install", str(archive), "--bundles", str(bundles), "--trust", f"{signing_key}.pub"
    )
    one_error_line(done, match="not signed")
    assert not any(bundles.rglob("*.onnx")) and not (bundles / "current").exists()


def test_no_space_for_the_bundle_is_named_before_writing(tmp_path, monkeypatch):
    from outpost.runtime.bundle import install as installer

    archive, bundles = tmp_path / "a.tar", tmp_path / "dev"
    _tar(archive, _fake_members())
    monkeypatch.setattr(
        installer.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1, 1, 100)
    )
    with pytest.raises(InputError, match="needs .* MB, 0.0 MB are free"):
        install(archive, bundles)
    assert not (bundles / "releases").exists() or not any((bundles / "releases").iterdir())


def test_disk_full_while_writing_is_reported_as_such(tmp_path, monkeypatch):
    from outpost.runtime.bundle import install as installer

    archive, bundles = tmp_path / "a.tar", tmp_path / "dev"
    _tar(archive, _fake_members())

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(installer.os, "fsync", full)
    with pytest.raises(InputError, match="the disk is full"):
        install(archive, bundles)
    monkeypatch.undo()
    assert not list(bundles.glob(".incoming-*")) and not (bundles / "current").exists()
    assert len(install(archive, bundles)) == 64  # the next try, with space, installs


# --- releases under kill -9 -----------------------------------------------------------------------

BIG = 24 * 2**20  # big enough that extracting and hashing take a while to kill inside


def _release(tmp_path: Path, name: str, seed: int) -> Path:
    """A fake bundle with a large weights file, packed as `outpost pack` does."""
    from outpost.export.ship.pack import pack

    files = {**FILES, "model/model.onnx.data": random.Random(seed).randbytes(BIG)}
    root = tmp_path / name
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "bundle.json").write_text(json.dumps(manifest_dict(files)))
    archive = tmp_path / f"{name}.tar"
    pack(root, archive)
    return archive


def _state(bundles: Path) -> tuple[str | None, str | None]:
    def link(name):
        try:
            return os.readlink(bundles / name)
        except OSError:
            return None

    return link("current"), link("previous")


def _verified(bundles: Path, target: str) -> bool:
    try:
        open_verified(bundles / target, always_hash=True, view=False).close()
    except BundleError:
        return False
    return True


def _strays(bundles: Path) -> list[str]:
    found = [p.name for p in bundles.iterdir() if p.name.startswith((".incoming-", ".trash-"))]
    found += [p.name for p in bundles.glob(".*.tmp-*")] + [p.name for p in bundles.glob(JOURNAL)]
    return found


def _kill_at(args: list[str], delay: float) -> bool:
    proc = subprocess.Popen(
        [sys.executable, "-m", "outpost.cli", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    return killed


def _duration(args: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "outpost.cli", *args], cwd=ROOT, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    return time.perf_counter() - start


def _flip(path: Path) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_kill_9_at_fifty_moments_of_install_reinstall_and_rollback(tmp_path):
    a, b, c = (_release(tmp_path, n, s) for n, s in (("a", 1), ("b", 2), ("c", 3)))
    template = tmp_path / "template"
    install(a, template)
    install(b, template)  # current b, previous a
    cur_b, prev_a = _state(template)
    rng = random.Random(17)
    report = {}
    scenarios = {
        "install": lambda dev: ["install", str(c), "--bundles", str(dev)],
        "reinstall over damaged": lambda dev: ["install", str(b), "--bundles", str(dev)],
        "rollback": lambda dev: ["rollback", "--bundles", str(dev)],
    }
    for name, command in scenarios.items():
        dev = tmp_path / f"dev-{name.replace(' ', '-')}"

        def fresh(dev=dev, damaged=name == "reinstall over damaged"):
            shutil.rmtree(dev, ignore_errors=True)
            shutil.copytree(template, dev, symlinks=True)
            if damaged:
                _flip(dev / cur_b / "model" / "model.onnx.data")

        fresh()
        span = _duration(command(dev)) * 1.1
        kills = 0
        for _ in range(50):
            fresh()
            kills += _kill_at(command(dev), rng.uniform(0.0, span))
            current, previous = _state(dev)
            # Right after the kill: `current` never dangles, and it is the release it was or a
            # verified one (only the damaged scenario starts from a damaged `current`).
            assert current and (dev / current / "bundle.json").is_file(), (name, current)
            if name != "reinstall over damaged" or current != cur_b:
                assert _verified(dev, current), (name, current)
            # The next run (here: installing what was being installed, or rolling back) ends
            # with both links on verified, different releases and nothing stray.
            if name == "rollback":
                rollback(dev)
            else:
                install(c if name == "install" else b, dev)
            current, previous = _state(dev)
            assert current != previous and _verified(dev, current) and _verified(dev, previous)
            assert _strays(dev) == [], _strays(dev)
            rollback(dev)  # rollback always reaches the other one, and back
            assert _state(dev) == (previous, current)
            rollback(dev)
        report[name] = kills
    print(f"kill -9 during: {report} (of 50 each; the rest had finished)")
    assert all(k >= 10 for k in report.values()), report


def test_a_switch_cut_between_its_two_links_is_finished_by_the_next_run(tmp_path):
    """The journal, without luck in timing: `previous` moved, `current` not yet (the moment a
    kill left both on one release before)."""
    a, b = _release(tmp_path, "a", 1), _release(tmp_path, "b", 2)
    dev = tmp_path / "dev"
    install(a, dev)
    install(b, dev)
    current, previous = _state(dev)
    _write_json(dev / JOURNAL, {"current": previous, "previous": current})  # a rollback began
    _apply(dev, current, current)  # ... and was cut after its first link: both on one release
    assert _state(dev) == (current, current)
    with locked(dev):  # any next install or rollback
        pass
    assert _state(dev) == (previous, current) and not (dev / JOURNAL).exists()


@pytest.mark.slow
def test_install_and_rollback_take_turns_and_releases_are_pruned(tmp_path):
    archives = [_release(tmp_path, n, s) for n, s in (("a", 1), ("b", 2), ("c", 3), ("d", 4))]
    dev = tmp_path / "dev"
    with locked(dev):
        one_error_line(
            outpost("install", str(archives[0]), "--bundles", str(dev)),
            match="another install or rollback is running",
        )
        one_error_line(outpost("rollback", "--bundles", str(dev)), match="no previous")
    for archive in archives:
        assert (
            outpost("install", str(archive), "--bundles", str(dev), "--keep", "2").returncode == 0
        )
    kept = sorted(p.name for p in (dev / "releases").iterdir())
    current, previous = _state(dev)
    assert len(kept) == 2 and {Path(current).name, Path(previous).name} == set(kept)
    assert resolve(dev) == (dev / current).resolve()


# --- small things ------------------------------------------------------------------------------


def test_keygen_on_a_full_disk_leaves_nothing_that_blocks_a_rerun(tmp_path, monkeypatch):
    from outpost.export.ship import sign

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sign.os, "fsync", full)
    with pytest.raises(InputError, match="No space left"):
        sign.generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
    assert sorted(os.listdir(tmp_path)) == []
    monkeypatch.undo()
    assert len(sign.generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")) == 16
    assert oct((tmp_path / "k.key").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    "field, value, message",
    [
        (("generation", "window_radius"), -1, "generation.window_radius"),
        (("generation", "max_context"), 10, "generation.max_context"),
        (("generation", "max_new_tokens"), 1536, "must be less than generation.max_context"),
        (("retrieval", "top_k"), 0, "retrieval.top_k"),
        (("index", "search"), "fast", "index.search"),
    ],
)
def test_manifest_values_out_of_range_name_their_field(tmp_path, field, value, message):
    from fake_bundle import write_fake_bundle

    data = manifest_dict()
    data[field[0]][field[1]] = value
    write_fake_bundle(tmp_path / "b", data)
    one_error_line(outpost("info", str(tmp_path / "b")), match=message)


def test_a_docx_zip_bomb_is_refused_before_it_is_read(tmp_path):
    import zipfile

    from outpost.export.documents.ingest import read_document

    bomb = tmp_path / "bomb.docx"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", b"\0" * (40 * 2**20))
    with pytest.raises(InputError, match="zip bomb"):
        read_document(bomb, "bomb.docx")


@pytest.mark.slow
def test_no_command_writes_into_what_it_reads(tiny_bundle, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nText.")
    one_error_line(outpost("export", str(docs), "--out", str(docs / "bundle")), match="overlap")
    one_error_line(
        outpost("export", str(docs / "a.md"), "--out", str(tmp_path), "--force"), match="overlap"
    )
    assert sorted(os.listdir(docs)) == ["a.md"]
    copy = link_copy(tiny_bundle, tmp_path / "b")
    one_error_line(outpost("pack", str(copy), "-o", str(copy / "b.tar")), match="inside the bundle")
    assert outpost("verify", str(copy)).returncode == 0


@pytest.mark.slow
def test_chat_reports_a_line_that_is_not_utf8_and_goes_on(tiny_bundle):
    proc = subprocess.run(
        [sys.executable, "-m", "outpost.cli", "chat", str(tiny_bundle), "--max-new-tokens", "2"],
        input=b"\xff\xfe bad\nWhat is the belt speed?\n",
        capture_output=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert b"not UTF-8 text (byte 0)" in proc.stderr and b"Traceback" not in proc.stderr
    assert proc.stdout.strip()  # the next line was answered (or declined) as usual


def test_index_falls_back_to_exact_search_when_no_graph_reaches_the_floor(monkeypatch, tmp_path):
    import numpy as np

    from outpost.export.retrieval import index as index_module
    from outpost.runtime.ask.retrieve import usearch_index

    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[100:200] = vectors[0:100]  # duplicate chunks (a translated manual's boilerplate)
    queries = vectors[:40] + 0.05 * rng.normal(size=(40, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    # Exact ranks among equal vectors are arbitrary: counted by rank, f32 recall was 0.97-0.985
    # here and the export stopped ("f32 search must reach the recall floor"). Ties count now.
    info = index_module.build_index(vectors, queries, tmp_path / "ok.usearch", lambda m: None)
    assert info["search"] == "hnsw" and info["expansion_search"] == 128
    assert max(info["recall_at_10"].values()) >= index_module.MIN_RECALL
    monkeypatch.setattr(index_module, "MIN_RECALL", 1.01)  # a floor no graph search can reach
    info = index_module.build_index(vectors, queries, tmp_path / "x.usearch", lambda m: None)
    assert info["search"] == "exact" and info["dtype"] == "f32"
    assert {"f32@256", "f32@512", "f32@1024"} <= set(info["recall_at_10"])
    index = usearch_index().restore(str(tmp_path / "x.usearch"))
    found = index.search(queries[0], 10, exact=True)
    tenth = np.sort(vectors @ queries[0])[-10]
    assert all(vectors[int(k)] @ queries[0] >= tenth - 1e-5 for k in found.keys)
