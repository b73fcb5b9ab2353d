"""Bad input: one `Error: ...` line, exit code 1 (2 for usage), no traceback, nothing written."""

import ast
import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import ROOT, load_make_pdf, outpost


def assert_clean_error(done, code=1, match=""):
    assert done.returncode == code, (done.returncode, done.stderr[-1500:])
    lines = done.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), done.stderr[-1500:]
    assert "Traceback" not in done.stderr
    assert match.lower() in lines[-1].lower(), lines[-1]
    return lines[-1]


def nothing_written(parent):
    return [p.name for p in parent.iterdir() if p.name.startswith(".") or p.name == "out"]


@pytest.mark.slow
def test_missing_docs_folder(tmp_path):
    done = outpost("export", str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    assert_clean_error(done, match="does not exist")
    assert len(done.stderr.strip().splitlines()) == 1
    assert nothing_written(tmp_path) == []


@pytest.mark.slow
def test_empty_docs_folder(tmp_path):
    (tmp_path / "docs").mkdir()
    done = outpost("export", str(tmp_path / "docs"), "--out", str(tmp_path / "out"))
    assert_clean_error(done, match="no readable documents")
    assert nothing_written(tmp_path) == []


@pytest.mark.slow
def test_only_unsupported_files(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "manual.xlsx").write_bytes(b"PK\x03\x04")
    done = outpost("export", str(tmp_path / "docs"), "--out", str(tmp_path / "out"))
    assert "skipped manual.xlsx: unsupported type '.xlsx'" in done.stderr
    assert_clean_error(done, match="add .md, .txt, .html, .pdf, .docx, .odt or .epub")
    assert nothing_written(tmp_path) == []


@pytest.mark.slow
def test_pdf_without_text(tmp_path):
    (tmp_path / "docs").mkdir()
    load_make_pdf().write_pdf(tmp_path / "docs" / "scan.pdf", [])
    done = outpost("export", str(tmp_path / "docs"), "--out", str(tmp_path / "out"))
    assert_clean_error(
        done, match="scan.pdf: no text found; its pages are blank or OCR read nothing"
    )
    assert nothing_written(tmp_path) == []


@pytest.mark.slow
def test_strict_fails_on_a_skipped_file(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "ok.md").write_text("# Ok\n\nGood text.")
    (tmp_path / "docs" / "bad.txt").write_bytes(b"\x00\x00binary")
    done = outpost("export", str(tmp_path / "docs"), "--out", str(tmp_path / "out"), "--strict")
    assert_clean_error(done, match="bad.txt: binary content")
    assert nothing_written(tmp_path) == []


@pytest.mark.slow
def test_unknown_base_model(tmp_path, examples_docs):
    done = outpost(
        "export", str(examples_docs), "--out", str(tmp_path / "out"), "--base", "no-such-model"
    )
    assert_clean_error(done, match="unknown base model 'no-such-model'")
    assert nothing_written(tmp_path) == []


@pytest.mark.slow
def test_failure_mid_export_leaves_no_target_and_no_temp(tmp_path, examples_docs):
    done = outpost(
        "export",
        str(examples_docs / "press"),
        "--out",
        str(tmp_path / "out"),
        "--embedder",
        str(tmp_path / "missing-embedder"),
    )
    assert_clean_error(done, match="cannot load embedder")
    assert "documents: 3/3" in done.stderr  # it got past ingestion before failing
    assert nothing_written(tmp_path) == []


@pytest.mark.slow
def test_existing_output_needs_force(tmp_path, examples_docs):
    (tmp_path / "out").mkdir()
    done = outpost("export", str(examples_docs), "--out", str(tmp_path / "out"))
    assert_clean_error(done, code=1, match="--force")


@pytest.mark.slow
def test_usage_errors_exit_2(tmp_path, examples_docs):
    done = outpost("export", str(examples_docs), "--out", str(tmp_path / "out"), "--top-k", "0")
    assert_clean_error(done, code=2, match="--top-k")
    done = outpost(
        "export", str(examples_docs), "--out", str(tmp_path / "o"), "--precision", "int3"
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_not_a_bundle(tmp_path):
    done = outpost("ask", str(tmp_path), "What?")
    assert_clean_error(done, match="is not a bundle (no bundle.json)")
    done = outpost("info", str(tmp_path / "missing"))
    assert_clean_error(done, match="is not a folder")


@pytest.mark.slow
def test_bundle_with_a_missing_file(tmp_path, smol_bundle):
    copy = tmp_path / "copy"
    shutil.copytree(smol_bundle, copy, copy_function=os.link)
    (copy / "index.usearch").unlink()
    done = outpost("ask", str(copy), "What?")
    assert_clean_error(done, match="index.usearch is missing")


@pytest.mark.slow
def test_a_damaged_model_file_opened_unverified_is_one_line(tmp_path, smol_bundle):
    """With --no-verify nothing checks the hashes: the embedder that onnxruntime's C library
    cannot parse is named, with what to do, in one line."""
    copy = tmp_path / "copy"
    shutil.copytree(smol_bundle, copy, copy_function=os.link)
    embedder = copy / "embedder" / "model.onnx"
    size = embedder.stat().st_size  # sizes are checked even so
    embedder.unlink()  # a link: the bundle's own file stays as it is
    embedder.write_bytes(b"\x07" * size)
    done = outpost("ask", str(copy), "What?", "--no-verify")
    line = assert_clean_error(done, match="cannot load embedder")
    assert line.endswith("copy the bundle again or re-export it")


@pytest.mark.slow
def test_bundle_with_a_truncated_file(tmp_path, smol_bundle):
    copy = tmp_path / "copy"
    shutil.copytree(smol_bundle, copy)
    with open(copy / "chunks.sqlite", "r+b") as f:
        f.truncate(1000)
    done = outpost("info", str(copy))
    assert_clean_error(done, match="chunks.sqlite has changed (1000 bytes")


@pytest.mark.slow
def test_empty_question(smol_bundle):
    assert_clean_error(outpost("ask", str(smol_bundle), "   "), match="question is empty")
    assert_clean_error(outpost("ask", str(smol_bundle), input=""), match="question is empty")


@pytest.mark.slow
def test_refusal_p_out_of_range(smol_bundle):
    done = outpost("ask", str(smol_bundle), "What is the PIN?", "--refusal-p", "1.5")
    assert_clean_error(done, code=2, match="--refusal-p must be between 0 and 1")


@pytest.mark.slow
def test_question_longer_than_the_context(smol_bundle):
    done = outpost("ask", str(smol_bundle), "why is the pump loud " * 600)
    assert_clean_error(done, match="-token budget; shorten it or raise --max-context")


def named_flags(path: Path) -> list[tuple[int, str]]:
    """(line, flag) for each `--flag` an error in `path` names, leaving out those of other
    programs' commands quoted in it (`pip install --no-deps ...`, `ray start --head`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        called = getattr(node, "func", None)
        name = getattr(called, "id", None) or getattr(called, "attr", "")
        if not (isinstance(node, ast.Call) and name.endswith(("Error", "Exception"))):
            continue
        text = "".join(
            n.value
            for n in ast.walk(node)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)
        )
        text = re.sub(r"`(?!outpost )[^`]*`", "", text)
        found += [(node.lineno, f) for f in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text)]
    return found


def test_every_flag_an_error_names_is_an_option_of_a_command():
    """An error that tells the user to pass a flag names one that exists (not a config field
    that has no flag, as `--block-size` was)."""
    import click

    from outpost.cli import cli

    flags = {"--help"}
    groups = [cli]
    while groups:  # every command, those of groups (`outpost feedback …`) included
        group = groups.pop()
        context = click.Context(group)
        for name in group.list_commands(context):
            command = group.get_command(context, name)
            if isinstance(command, click.Group):
                groups.append(command)
            for p in command.params:
                if isinstance(p, click.Option):
                    flags |= {*p.opts, *p.secondary_opts}
    unknown = [
        f"{path.relative_to(ROOT)}:{line}: {flag}"
        for folder in ("runtime", "export", "trainer", "src")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for line, flag in named_flags(path)
        if flag not in flags
    ]
    assert not unknown, unknown
