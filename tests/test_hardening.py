"""Hostile and careless inputs: a tampered bundle is never served on a trusted device, no input
reaches a traceback, nothing of the user's is lost. One test per case of docs/reliability.md."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT, outpost
from fake_bundle import manifest_dict, write_fake_bundle
from outpost.export.documents.ingest import MAX_TEXT_BYTES, discover, ingest, read_document
from outpost.runtime.files import remove_stale


def one_error_line(done, code=1, match=""):
    assert done.returncode == code, (done.returncode, done.stderr[-1500:])
    lines = done.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: ") and "Traceback" not in done.stderr, (
        done.stderr[-1500:]
    )
    assert match.lower() in lines[-1].lower(), lines[-1]
    return lines[-1]


def flip_same_size(path, offset=200):
    """Change one byte, keep size and mtime: what an attacker with write access does."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


# --- trust ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_trusted_device_refuses_a_tampered_copy_of_a_verified_bundle(
    tiny_bundle, signing_key, tmp_path
):
    trust = f"{signing_key}.pub"
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bundle, copy)
    question = ["What is the belt speed?", "--max-new-tokens", "2", "--trust", trust]
    assert outpost("ask", str(copy), *question).returncode == 0  # verified once
    flip_same_size(copy / "chunks.sqlite")
    one_error_line(outpost("ask", str(copy), *question), match="chunks.sqlite has changed")
    one_error_line(
        outpost("ask", str(copy), *question[:3]), match="chunks.sqlite has changed"
    )  # no keys: stamps differ
    one_error_line(
        outpost("pack", str(copy), "-o", str(tmp_path / "x.tar")), match="chunks.sqlite has changed"
    )
    assert not (tmp_path / "x.tar").exists()


@pytest.mark.slow
def test_reinstalling_replaces_a_tampered_release(tiny_bundle, signing_key, tmp_path):
    archive, bundles = tmp_path / "b.tar", tmp_path / "device"
    assert outpost("pack", str(tiny_bundle), "-o", str(archive)).returncode == 0
    assert outpost("install", str(archive), "--bundles", str(bundles)).returncode == 0
    release = (bundles / "current").resolve()
    flip_same_size(release / "chunks.sqlite")
    assert outpost("verify", str(bundles)).returncode == 1
    done = outpost(
        "install", str(archive), "--bundles", str(bundles), "--trust", f"{signing_key}.pub"
    )
    assert done.returncode == 0, done.stderr
    assert outpost("verify", str(bundles)).returncode == 0


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd"])
def test_manifest_paths_outside_the_bundle_are_refused(tmp_path, bad):
    data = manifest_dict()
    data["files"][bad] = {"size": 1, "sha256": "0" * 64}
    write_fake_bundle(tmp_path / "bundle", data)
    for command in ("verify", "info"):
        one_error_line(
            outpost(command, str(tmp_path / "bundle")), match="not a plain relative path"
        )
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / "bundle", arcname="bundle")
    one_error_line(
        outpost("install", str(archive), "--bundles", str(tmp_path / "dev")),
        match="not a plain relative path",
    )
    assert not (tmp_path / "dev" / "current").exists()


def test_a_link_inside_a_bundle_is_not_a_file(tmp_path):
    write_fake_bundle(tmp_path / "b")
    (tmp_path / "b" / "index.usearch").unlink()
    (tmp_path / "b" / "index.usearch").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").write_bytes(b"\0" * 512)
    one_error_line(outpost("verify", str(tmp_path / "b")), match="problem")


# --- data loss ------------------------------------------------------------------------------


def test_latin1_text_is_decoded_with_a_note(tmp_path):
    (tmp_path / "fr.txt").write_bytes(
        "Température maximale : 80 °C. Vérifier l’huile.".encode("cp1252")
    )
    doc = read_document(tmp_path / "fr.txt", "fr.txt")
    assert doc.blocks[0].text == "Température maximale : 80 °C. Vérifier l’huile."
    assert doc.notes == ["not UTF-8; decoded as Windows-1252 (check accented letters)"]
    html = '<html><head><meta charset="iso-8859-15"></head><body><p>Prix : 5 \xa4</p></body></html>'
    (tmp_path / "p.html").write_bytes(html.encode("latin-1"))
    doc = read_document(tmp_path / "p.html", "p.html")
    assert doc.blocks[0].text == "Prix : 5 €" and "iso-8859-15" in doc.notes[0]
    (tmp_path / "u16.txt").write_bytes("Druck 6,5 bar".encode("utf-16"))
    assert read_document(tmp_path / "u16.txt", "u16.txt").blocks[0].text == "Druck 6,5 bar"


@pytest.mark.slow
def test_notes_reach_the_export_log(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "fr.txt").write_bytes("Température 80 °C.".encode("cp1252"))
    done = outpost(
        "export", str(tmp_path / "docs"), "--out", str(tmp_path / "out"), "--base", "no-such-model"
    )
    assert "note fr.txt: not UTF-8; decoded as Windows-1252" in done.stderr


def test_unreadable_folder_is_listed_and_fails_strict():
    if os.geteuid() != 0:
        pytest.skip("needs root to run the check as another user")
    tmp_path = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own folder is closed to other users
    docs = tmp_path / "shared" / "docs"
    (docs / "secret").mkdir(parents=True)
    (docs / "a.md").write_text("# A\n\nReadable text.")
    (docs / "secret" / "b.md").write_text("# B\n\nHidden text.")
    os.chmod(docs / "secret", 0o700)
    for p in (tmp_path, tmp_path / "shared", docs):
        os.chmod(p, 0o755)
    code = (
        f"import json; from outpost.export.documents.ingest import discover; files, skipped, _ = discover(['{docs}']); "
        "print(json.dumps([[s for _, s in files], [[k.path, k.reason] for k in skipped]]))"
    )
    # The project's venv may sit under a folder only root can enter: use the system Python, which
    # is enough for export.ingest (standard library only).
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 to run the check as another user")
    # The `outpost` package as an installed wheel lays it out (pyproject.toml's package-dir).
    site = tmp_path / "site" / "outpost"
    site.mkdir(parents=True)
    (site / "__init__.py").symlink_to(ROOT / "src" / "outpost" / "__init__.py")
    (site / "runtime").symlink_to(ROOT / "runtime")
    (site / "export").symlink_to(ROOT / "export")
    for p in (site.parent, site):
        os.chmod(p, 0o755)
    done = subprocess.run(
        [python, "-c", code],
        cwd="/",
        capture_output=True,
        text=True,
        user=65534,
        env={"PYTHONPATH": str(site.parent), "HOME": "/tmp"},
    )
    if done.returncode != 0:
        pytest.skip(f"cannot run as nobody here: {done.stderr.strip()[-200:]}")
    try:
        files, skipped = json.loads(done.stdout)
        assert files == ["a.md"] and skipped == [
            ["secret", "unreadable folder (Permission denied)"]
        ]
    finally:
        shutil.rmtree(tmp_path)


@pytest.mark.slow
def test_force_replaces_only_a_bundle_of_ours(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "bundle.json").write_text("{}")
    (out / "thesis.docx").write_text("years of work")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\nText.")
    done = outpost("export", str(tmp_path / "docs"), "--out", str(out), "--force")
    one_error_line(done, match="not a bundle made by `outpost export`")
    assert (out / "thesis.docx").read_text() == "years of work"
    write_fake_bundle(out)  # a real bundle layout, plus the user's file
    done = outpost("export", str(tmp_path / "docs"), "--out", str(out), "--force")
    one_error_line(done, match="thesis.docx")
    assert (out / "thesis.docx").exists()


def test_temp_folders_of_live_processes_are_kept(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        for pid in (live.pid, dead.pid):
            (tmp_path / f".b.tmp-{pid}").mkdir()
        removed = remove_stale(tmp_path, ".b.tmp-")
        assert removed == [tmp_path / f".b.tmp-{dead.pid}"]
        assert (tmp_path / f".b.tmp-{live.pid}").is_dir()
    finally:
        live.kill()


# --- resources ------------------------------------------------------------------------------


def test_huge_and_single_line_files(tmp_path):
    (tmp_path / "dump.txt").write_bytes(b"x" * (MAX_TEXT_BYTES + 1))
    (tmp_path / "long.txt").write_text("A sentence about the pump. " * 5000)  # one 135k-char line
    docs, skipped, _ = ingest([tmp_path])
    assert [(s.path, s.reason) for s in skipped] == [
        ("dump.txt", "16 MB, over the 16 MB limit for text files; split it")
    ]
    assert docs[0].notes == ["a line of 135000 characters; split into chunks at sentences"]


def test_nul_and_control_characters_are_removed_from_documents(tmp_path):
    text = "# Pump\n\n" + "Filler line.\n" * 400 + "Pressure\x00 6.5\x07 bar.\n"
    (tmp_path / "a.md").write_bytes(text.encode())
    doc = read_document(tmp_path / "a.md", "a.md")
    assert doc.blocks[-1].text.endswith("Pressure 6.5 bar.")
    (tmp_path / "b.txt").write_bytes(b"\x00\x01binary")
    with pytest.raises(Exception, match="binary content"):
        read_document(tmp_path / "b.txt", "b.txt")


# --- links and paths --------------------------------------------------------------------------


def test_link_loops_and_links_outside_are_skipped(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nText.")
    (docs / "loop1.md").symlink_to(docs / "loop2.md")
    (docs / "loop2.md").symlink_to(docs / "loop1.md")
    (tmp_path / "secret.txt").write_text("not a manual")
    (docs / "outside.txt").symlink_to(tmp_path / "secret.txt")
    (docs / "inside.md").symlink_to(docs / "a.md")  # a second name for a file: read once
    files, skipped, _ = discover([docs])
    assert [s for _, s in files] == ["a.md"]
    reasons = {s.path: s.reason for s in skipped}
    assert reasons["loop1.md"].startswith("broken or looping link") and "loop2.md" in reasons
    assert (
        reasons["outside.txt"]
        == f"a link to {tmp_path / 'secret.txt'}, outside the documents folder"
    )


@pytest.mark.slow
def test_out_under_an_existing_file(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\nText.")
    (tmp_path / "file").write_text("x")
    done = outpost("export", str(tmp_path / "docs"), "--out", str(tmp_path / "file" / "b"))
    one_error_line(done, match="is a file, not a folder")


def test_invalid_utf8_on_stdin(tmp_path):
    write_fake_bundle(tmp_path / "b")
    done = subprocess.run(
        [sys.executable, "-m", "outpost.cli", "ask", str(tmp_path / "b")],
        input=b"\xff\xfe what",
        capture_output=True,
        cwd=ROOT,
    )
    assert done.returncode == 1
    assert (
        done.stderr.decode().strip()
        == "Error: the question on stdin is not UTF-8 text (byte 0); send UTF-8"
    )


@pytest.mark.parametrize("text", ["[1, 2, 3]", '{"schema": 1}', "null", "{"])
def test_manifest_of_the_wrong_shape(tmp_path, text):
    write_fake_bundle(tmp_path / "b")
    (tmp_path / "b" / "bundle.json").write_text(text)
    for command in (["info"], ["verify"], ["ask", "--no-verify", "Why?"]):
        one_error_line(outpost(command[0], str(tmp_path / "b"), *command[1:]), match="bundle.json")


@pytest.mark.slow
def test_foreign_chunk_store_with_no_verify(tiny_bundle, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bundle, copy)
    size = (copy / "chunks.sqlite").stat().st_size
    (copy / "chunks.sqlite").write_bytes(os.urandom(size))
    done = outpost("ask", str(copy), "What is the belt speed?", "--no-verify")
    one_error_line(done, match="cannot load index.usearch or chunks.sqlite")


@pytest.mark.slow
def test_threads_are_clamped_to_the_cores(tiny_bundle):
    done = outpost(
        "ask",
        str(tiny_bundle),
        "What is the belt speed?",
        "--threads",
        "999",
        "--max-new-tokens",
        "2",
    )
    assert done.returncode == 0, done.stderr
    assert "note: --threads 999 is more than the" in done.stderr


def test_install_into_a_file(tmp_path):
    write_fake_bundle(tmp_path / "b")
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / "b", arcname="bundle")
    (tmp_path / "dev").write_text("a file")
    one_error_line(
        outpost("install", str(archive), "--bundles", str(tmp_path / "dev")),
        match="cannot write there",
    )
    assert (tmp_path / "dev").read_text() == "a file"


def test_exit_codes_follow_the_table(tmp_path):
    (tmp_path / "keys.key").write_text("x")
    one_error_line(outpost("keygen", "-o", str(tmp_path / "keys")), code=1, match="already exists")
    one_error_line(
        outpost("rollback", "--bundles", str(tmp_path)), code=1, match="no previous bundle"
    )
    one_error_line(
        outpost("install", str(tmp_path / "none.tar"), "--bundles", str(tmp_path / "d")),
        code=1,
        match="does not exist",
    )
    assert outpost("ask").returncode == 2  # missing argument
    assert outpost("ask", str(tmp_path), "q", "--top-k", "x").returncode == 2


@pytest.mark.slow
def test_training_out_naming_a_file(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "a", "completion": "b"}))
    (tmp_path / "run").write_text("x")
    one_error_line(
        outpost("train", "--data", str(data), "--out", str(tmp_path / "run")),
        match="is a file, not a folder",
    )
