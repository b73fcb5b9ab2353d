"""Hostile inputs at the build side's doors (issue 28): discovery reads plain files only and
nothing it opens can block, the HTML reader and the chunker run in linear time, a file can
become only so much text, a file that vanishes is skipped, the signing key, the questions file
and the Ray address are checked before any work, `verify` names every odd entry in a bundle,
eval shows its progress in a log, and no float option takes NaN or infinity."""

from __future__ import annotations

import json
import os
import socket
import time
import types
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from test_hardening import one_error_line

from conftest import outpost
from fake_bundle import write_fake_bundle
from outpost.export import bundle as export_bundle
from outpost.export.config import ChunkConfig, ExportConfig
from outpost.export.documents.chunk import chunk_document
from outpost.export.documents.document import Block, Document
from outpost.export.documents.ingest import MAX_RUN_CHARS, discover, hash_document, read_chunks
from outpost.export.documents.languages import declared
from outpost.export.documents.readers.html_page import read_html
from outpost.runtime import log
from outpost.runtime.ask.evaluate import load_questions
from outpost.runtime.errors import InputError

PARAGRAPH = "# Filter\n\nThe hydraulic filter is replaced every 500 operating hours.\n"


def documents(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "filter.md").write_text(PARAGRAPH)
    return folder


def bound_socket(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    return s


# --- case 9: plain files only, and nothing opened can block ---------------------------------


@pytest.mark.timeout(30)
def test_discovery_takes_plain_files_only(tmp_path):
    docs = documents(tmp_path / "docs")
    os.mkfifo(docs / "pipe.md")
    os.symlink(docs / "pipe.md", docs / "link.txt")  # a link to a FIFO inside the folder
    sock = bound_socket(docs / "sock.html")
    try:
        files, skipped, _ = discover([docs])
        named, _, _ = discover([docs / "pipe.md"])  # a FIFO given on the command line
    finally:
        sock.close()
    assert [source for _, source in files] == ["filter.md"]
    reasons = {s.path: s.reason for s in skipped}
    assert "FIFO" in reasons["pipe.md"] and "FIFO" in reasons["link.txt"], reasons
    assert "socket" in reasons["sock.html"], reasons
    assert all("plain file" in r for r in reasons.values()), reasons
    assert named == []


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_export_with_a_fifo_and_a_flood_in_its_documents_finishes(tiny_phi3, tmp_path):
    """Before: the export blocked forever on the FIFO (case 9)."""
    docs = documents(tmp_path / "docs")
    os.mkfifo(docs / "pipe.md")
    (docs / "flood.txt").write_text("a" * 15_000_000)
    (docs / "mixed.txt").write_text("Check the belt tension weekly.\n\n" + "QUFB" * 1000)
    out = tmp_path / "bundle"
    done = outpost("export", str(docs), "--out", str(out), "--base", str(tiny_phi3), timeout=500)
    assert done.returncode == 0, done.stderr[-2000:]
    sources = json.loads((out / "bundle.json").read_text())["sources"]
    assert [d["path"] for d in sources["documents"]] == ["filter.md", "mixed.txt"]
    skipped = {s["path"]: s["reason"] for s in sources["skipped"]}
    assert "FIFO" in skipped["pipe.md"] and "without a space" in skipped["flood.txt"], skipped
    assert "note mixed.txt: 1 run(s) of more than 2000 characters" in done.stderr


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", ["late.md", "late.txt", "late.html", "late.pdf", "late.docx"])
def test_a_fifo_swapped_in_after_discovery_is_skipped_at_once(tmp_path, name):
    """Found as a file, replaced by a FIFO before it is read: skipped, never a blocking read."""
    path = tmp_path / name
    os.mkfifo(path)
    started = time.perf_counter()
    kind, _, reason, chunks = read_chunks(path, name, ChunkConfig())
    assert (kind, chunks) == ("", []) and "FIFO" in reason, reason
    with pytest.raises(InputError, match="FIFO"):
        hash_document(path)  # what the export hashes first
    assert declared(path) is None  # the language a page declares: not read from a FIFO
    assert time.perf_counter() - started < 5


# --- case 10: the HTML reader runs in linear time -------------------------------------------

N = 60_000  # about 700 KB of most patterns: the size that ran past 45 s before

HOSTILE_HTML = {
    "nested tags": "<div>" * N + "x" + "</div>" * N,
    "nested tags with text": "<div>x" * N,
    "stray end tags": "<div>" * 20_000 + "x" + "</span>" * N,
    "rows in one cell": "<table><tr><td>" + "<tr>x" * N,
    "unterminated comments": "<!--" * N,
    "comments closed by > only": "<!--a>" * N,
    "unterminated start tags": "<a" * N,
    "unterminated end tags": "</" * N,
    "processing instructions": "<?" * N,
    "marked sections": "<![" * N,
    "CDATA without its end": "<![CDATA[>" * N,
    "open quotes": "<a b='" * N,
    "word paragraphs": "<p><![if !supportLists]>-<![endif]>item " * (N // 4),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("end", ["", "<p>The last paragraph.</p>"], ids=["at the end", "inside"])
@pytest.mark.parametrize("name", sorted(HOSTILE_HTML))
def test_the_html_reader_runs_in_linear_time(name, end):
    page = HOSTILE_HTML[name] + end
    started = time.perf_counter()
    blocks = read_html(page)
    took = time.perf_counter() - started
    assert took < 2.5, f"{name}: {took:.1f} s for {len(page) // 1000} KB"
    if name in ("nested tags with text", "rows in one cell"):
        assert sum(b.text.count("x") for b in blocks) == N
    if name == "word paragraphs":
        assert "<![" not in blocks[0].text and "item" in blocks[0].text


def test_the_html_reader_still_reads_what_it_read_before():
    page = (
        "<html><body><nav>Home</nav><main><h1>Pump</h1><p>Runs <b>dry</b>.</p>"
        "<!-- a comment --><p><![if !supportLists]>1.<![endif]> Prime it.</p>"
        "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>"
        "<p>x &lt; y &amp; z</p></main><p>outside</p></body></html>"
    )
    texts = [(b.headings, b.text) for b in read_html(page)]
    assert texts == [
        (("Pump",), "Runs dry."),
        (("Pump",), "1. Prime it."),
        (("Pump",), "a | b\nc | d"),
        (("Pump",), "x < y & z"),
    ]


# --- a one-line text file: bounded by construction -----------------------------------------


@pytest.mark.timeout(60)
def test_a_run_without_spaces_is_left_out_with_a_note(tmp_path):
    flood = tmp_path / "flood.txt"
    flood.write_text("a" * 15_000_000)
    started = time.perf_counter()
    kind, notes, reason, chunks = read_chunks(flood, "flood.txt", ChunkConfig())
    assert chunks == [] and "without a space" in reason, (reason, len(chunks))
    assert time.perf_counter() - started < 15

    mixed = tmp_path / "mixed.md"
    mixed.write_text(PARAGRAPH + "\n" + "QUFB" * 500_000 + "\n\nAfter the blob.\n")
    kind, notes, reason, chunks = read_chunks(mixed, "mixed.md", ChunkConfig())
    text = " ".join(c.text for c in chunks)
    assert not reason and "QUFB" not in text and "500 operating hours" in text
    assert "After the blob." in text and len(chunks) <= 2
    assert any("2000000 characters without a space" in n for n in notes), notes
    assert any(str(MAX_RUN_CHARS) in n for n in notes), notes


@pytest.mark.timeout(60)
def test_the_chunker_runs_in_linear_time_on_a_huge_paragraph():
    words = ("word " * 3_000_000).strip()  # 15 MB, no sentence ends: every piece a hard cut
    doc = Document("w.txt", None, "text", [Block(words)])
    started = time.perf_counter()
    chunks = chunk_document(doc, ChunkConfig())
    assert time.perf_counter() - started < 6  # 23 s before
    assert all(len(c.text) <= 1400 for c in chunks) and chunks[-1].end == len(words)
    for c in chunks[:3] + chunks[-3:]:
        assert words[c.start : c.end].split() == c.text.split()


# --- a file that vanishes mid-export --------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_file_that_vanishes_mid_export_is_skipped(tmp_path, monkeypatch):
    docs = documents(tmp_path / "docs")
    (docs / "gone.md").write_text("# Gone\n\nThis file is deleted after it is found.\n")
    found_files = export_bundle.discover

    def discover_then_delete(*args, **kwargs):
        found = found_files(*args, **kwargs)
        (docs / "gone.md").unlink()
        return found

    monkeypatch.setattr(export_bundle, "discover", discover_then_delete)
    config = ExportConfig(docs=[str(docs)], out=str(tmp_path / "out"))
    found = export_bundle._collect(config, None, 0)
    assert [d["path"] for d in found.documents] == ["filter.md"]
    [skipped] = found.skipped
    assert skipped.path == "gone.md" and "vanished" in skipped.reason, skipped

    (docs / "gone.md").write_text("again")
    strict = ExportConfig(docs=[str(docs)], out=str(tmp_path / "out"), strict=True)
    with pytest.raises(InputError, match="gone.md: vanished"):
        export_bundle.build_bundle(strict)
    assert not (tmp_path / "out").exists()


# --- export inputs checked before any work --------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_signing_key_is_checked_before_any_work(tmp_path, signing_key):
    docs = documents(tmp_path / "docs")
    out = tmp_path / "out"
    os.mkfifo(tmp_path / "fifo.key")
    (tmp_path / "junk.key").write_text("not a key\n")
    cases = {
        tmp_path / "fifo.key": "FIFO",
        Path(f"{signing_key}.pub"): "public key",
        tmp_path / "junk.key": "not an Ed25519 private key",
        tmp_path / "none.key": "does not exist",
    }
    for key, reason in cases.items():
        done = outpost("export", str(docs), "--out", str(out), "--sign", str(key), timeout=60)
        line = one_error_line(done, 1, reason)
        assert str(key) in line
        assert not out.exists()


BAD_ROWS = [
    ('{"question": 12}', "question"),
    ('{"question": "Q?", "answerable": "yes"}', "answerable"),
    ('{"question": "Q?", "answer_keywords": "280"}', "answer_keywords"),
    ('{"question": "Q?", "answer_keywords": [280]}', "answer_keywords"),
    ('{"question": "Q?", "answer_keywords": [""]}', "answer_keywords"),
    ('{"question": "Q?", "source_path": 3}', "source_path"),
    ('{"question": "Q?", "id": ["a"]}', "id"),
    ('{"question": "Q?", "answer": {"text": "x"}}', "answer"),
]


@pytest.mark.parametrize(("row", "field"), BAD_ROWS)
def test_question_rows_of_the_wrong_shape_name_file_line_and_field(tmp_path, row, field):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "Fine?", "answer_keywords": ["500"]}\n' + row + "\n")
    with pytest.raises(InputError, match=f'{path}:2: "{field}"'):
        load_questions(path)


def test_a_questions_fifo_is_named_for_what_it_is(tmp_path):
    os.mkfifo(tmp_path / "q.jsonl")
    with pytest.raises(InputError, match="FIFO"):
        load_questions(tmp_path / "q.jsonl")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_bad_questions_file_fails_before_any_work(tmp_path):
    docs = documents(tmp_path / "docs")
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "Q?"}\n{"question": "Q?", "answer_keywords": "280"}\n')
    done = outpost(
        "export", str(docs), "--out", str(tmp_path / "out"), "--questions", str(questions),
        timeout=60,
    )  # fmt: skip
    one_error_line(done, 1, f'{questions}:2: "answer_keywords"')
    assert not (tmp_path / "out").exists()
    write_fake_bundle(tmp_path / "b")
    done = outpost("eval", str(tmp_path / "b"), "--questions", str(questions), timeout=60)
    one_error_line(done, 1, f'{questions}:2: "answer_keywords"')


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_an_unreachable_ray_address_fails_in_seconds(tmp_path):
    docs = documents(tmp_path / "docs")
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    try:
        for address in ("127.0.0.1:1", f"127.0.0.1:{silent.getsockname()[1]}"):
            started = time.perf_counter()
            done = outpost(
                "export", str(docs), "--out", str(tmp_path / "out"), "--engine", "ray",
                "--address", address, timeout=90,
            )  # fmt: skip
            one_error_line(done, 1, f"--address {address}")
            assert time.perf_counter() - started < 60
    finally:
        silent.close()


# --- verify names every odd entry -----------------------------------------------------------


@pytest.mark.timeout(60)
def test_verify_names_fifos_sockets_and_empty_folders(tmp_path):
    bundle = tmp_path / "b"
    write_fake_bundle(bundle)
    assert outpost("verify", str(bundle)).returncode == 0
    os.mkfifo(bundle / "model" / "pipe")
    sock = bound_socket(bundle / "sock")
    (bundle / "empty" / "deeper").mkdir(parents=True)
    try:
        done = outpost("verify", str(bundle), "--json")
    finally:
        sock.close()
    assert done.returncode == 1, done.stderr
    found = {p["path"]: p for p in json.loads(done.stdout)["problems"]}
    assert found["model/pipe"]["kind"] == "unexpected" and "FIFO" in found["model/pipe"]["detail"]
    assert "socket" in found["sock"]["detail"]
    assert "empty folder" in found["empty/deeper"]["detail"]
    assert "empty" not in found  # a folder holding only an empty folder: the inner one is named


# --- eval progress in a log -----------------------------------------------------------------


def test_progress_is_logged_every_few_seconds_without_a_terminal(monkeypatch, capsys):
    """40 questions of 3 s each: a line at least every 5 s, not only at every quarter."""
    now = [0.0]
    monkeypatch.setattr(log, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    progress = log.counter("questions")
    for done in range(1, 41):
        now[0] += 3.0
        progress(done, 40)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith("questions: 1/40") and lines[-1].endswith("questions: 40/40")
    assert len(lines) >= 20, lines


# --- no float option takes NaN or infinity --------------------------------------------------


def placeholders(command: click.Command) -> list[str]:
    """Arguments and required options with placeholder values: enough for click to reach
    every option's conversion."""
    args = []
    for p in command.params:
        if isinstance(p, click.Argument):
            args += ["x"] * max(p.nargs, 1)
        elif p.required:
            args += [p.opts[0], "x"]
    return args


def test_no_float_option_takes_nan_or_infinity():
    from outpost.cli import cli

    runner = CliRunner()
    context = click.Context(cli)
    checked = []
    for name in cli.list_commands(context):
        command = cli.get_command(context, name)
        for option in command.params:
            if not isinstance(option.type, click.types.FloatParamType):
                continue
            flag = option.opts[-1] if option.opts[-1].startswith("--") else option.opts[0]
            for bad in ("nan", "NaN", "inf", "-inf"):
                done = runner.invoke(cli, [name, flag, bad])
                assert done.exit_code == 2, (name, flag, bad, done.output)
                assert "finite" in done.output and flag in done.output, done.output
            if option.envvar:
                env = {option.envvar: "nan"}
                done = runner.invoke(cli, [name, *placeholders(command)], env=env)
                assert done.exit_code == 2 and "finite" in done.output, (name, done.output)
            checked.append(flag)
    assert {"--threshold", "--queue-timeout", "--min-evidence"} <= set(checked), checked


def test_a_training_recipe_cannot_set_a_float_to_nan(tmp_path):
    from outpost.runtime.errors import UsageError
    from outpost.trainer.config import resolve_config

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("learning_rate: .nan\nepochs: .inf\n")
    with pytest.raises(UsageError, match="--learning-rate must be a finite number, not nan"):
        resolve_config(str(recipe), {})
