"""bundle.json as a typed manifest: every field checked, named when wrong, paths kept inside."""

import json

import pytest

from conftest import outpost
from fake_bundle import manifest_dict, write_fake_bundle
from outpost.runtime.bundle.manifest import Manifest
from outpost.runtime.bundle.open import check_files, open_bundle
from outpost.runtime.bundle.verify import check_binding
from outpost.runtime.errors import BundleError


def parse(data) -> Manifest:
    return Manifest.from_json(json.dumps(data))


def test_round_trip_keeps_every_field():
    data = manifest_dict()
    m = parse(data)
    assert m.embedder.dim == 8 and m.index.embedder.normalize is True
    assert m.files["index.usearch"].size == 512
    assert parse(m.to_dict()) == m
    assert json.loads(m.to_json()) == data  # same keys and values as written


def drop(data, path):
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[p]
    del node[last]
    return data


@pytest.mark.parametrize(
    "path",
    [
        "model",
        "model.dir",
        "embedder.dim",
        "index.embedder.sha256",
        "store.count",
        "retrieval.grounding_threshold",
        "generation.max_context",
        "files",
        "sources.documents",
    ],
)
def test_a_missing_field_is_named(path):
    with pytest.raises(BundleError, match=f"field '{path}' is missing"):
        parse(drop(manifest_dict(), path))


@pytest.mark.parametrize(
    "path, value, expected",
    [
        ("embedder.dim", "384", "must be an integer"),
        ("embedder.normalize", 1, "must be true or false"),
        ("index.count", True, "must be an integer"),
        ("retrieval.top_k", 4.5, "must be an integer"),
        ("model", [], "must be an object"),
        ("files", [1, 2], "must be an object"),
        ("model.adapter", "x", "must be an object"),
    ],
)
def test_a_field_of_the_wrong_type_is_named(path, value, expected):
    data = manifest_dict()
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[p]
    node[last] = value
    with pytest.raises(BundleError, match=f"field '{path}' {expected}"):
        parse(data)


def test_a_file_entry_without_size_is_named():
    data = manifest_dict()
    del data["files"]["index.usearch"]["size"]
    with pytest.raises(BundleError, match=r"field \"files\['index.usearch'\].size\" is missing"):
        parse(data)


def test_optional_fields_take_their_defaults():
    data = manifest_dict()
    del data["generation"]["refusal_min_p"], data["export_seconds"]
    m = parse(data)
    assert m.generation.refusal_min_p == 0.5 and m.export_seconds is None


@pytest.mark.parametrize("text", ["[1, 2, 3]", '{"schema": 1}', '"bundle"', "{", '{"schema": 99}'])
def test_not_a_manifest(text):
    with pytest.raises(BundleError) as e:
        Manifest.from_json(text)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "bad", ["../../etc/passwd", "/etc/passwd", "model/../../x", "a//b", "./a", "a\\b"]
)
def test_file_paths_must_stay_inside_the_bundle(bad):
    data = manifest_dict()
    data["files"][bad] = {"size": 1, "sha256": "0" * 64}
    with pytest.raises(BundleError, match="not a plain relative path inside the bundle"):
        parse(data)


def test_referenced_files_must_be_listed():
    data = manifest_dict()
    data["index"]["file"] = "other.usearch"
    with pytest.raises(BundleError, match="field 'index.file' names 'other.usearch'"):
        parse(data)


def test_binding_names_the_part_that_does_not_fit():
    data = manifest_dict()
    data["embedder"]["dim"] = 768
    data["store"]["count"] = 4
    problems = [str(p) for p in check_binding(None, parse(data))]
    assert "index.usearch: binding (embedder dim 768, index built for 8)" in problems
    assert "chunks.sqlite: binding (4 chunks, index holds 3)" in problems
    data = manifest_dict()
    data["index"]["embedder"]["sha256"] = "f" * 64
    assert [p.detail for p in check_binding(None, parse(data))] == [
        "built by a different embedder model file"
    ]


def test_file_check_names_missing_changed_and_unexpected(tmp_path):
    write_fake_bundle(tmp_path)
    (tmp_path / "index.usearch").unlink()
    (tmp_path / "chunks.sqlite").write_bytes(b"x" * 256)  # same size, other bytes
    (tmp_path / "model" / "notes.txt").write_text("hi")
    m = open_bundle(tmp_path, check_sizes=False).manifest
    found = {(p.path, p.kind) for p in check_files(tmp_path, m)}
    assert found == {
        ("index.usearch", "missing"),
        ("chunks.sqlite", "changed"),
        ("model/notes.txt", "unexpected"),
    }
    assert {p.path for p in check_files(tmp_path, m, hashes=False)} == {
        "index.usearch",
        "model/notes.txt",
    }


def test_cli_names_the_broken_field_in_one_line(tmp_path):
    data = manifest_dict()
    del data["retrieval"]["top_k"]
    write_fake_bundle(tmp_path / "b", data)
    for command in (["info"], ["verify"], ["ask", "--no-verify"]):
        done = outpost(
            command[0],
            str(tmp_path / "b"),
            *command[1:],
            *(["Why?"] if command[0] == "ask" else []),
        )
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines() == [
            f"Error: {tmp_path / 'b' / 'bundle.json'}: field 'retrieval.top_k' is missing; "
            "copy the bundle again or re-export it"
        ]


def test_info_and_verify_on_a_complete_manifest(tmp_path):
    write_fake_bundle(tmp_path / "b")
    done = outpost("info", str(tmp_path / "b"))
    assert done.returncode == 0, done.stderr
    assert "3 chunks, usearch cos f32" in done.stdout
    done = outpost("verify", str(tmp_path / "b"), "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["ok"] is True
    assert json.loads(outpost("info", str(tmp_path / "b"), "--json").stdout) == manifest_dict()


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("embedder", "languages"), [1], "embedder.languages[0]"),
        (("checks", "conversion"), 5, "checks.conversion"),
        (("checks", "conversion", "top1_agreement"), "x", "checks.conversion.top1_agreement"),
        (("checks", "retrieval"), "x", "checks.retrieval"),
        (("languages", "chunks"), "x", "languages.chunks"),
        (("languages", "runs"), [[0, "1", "en"]], "languages.runs[0][1]"),
        (("languages", "also"), {"nb": [[0]]}, "languages.also['nb'][0]"),
    ],
)
def test_nested_fields_of_the_wrong_shape_are_named(tmp_path, path, value, field):
    """Record sections the runtime reads (checks, languages) are checked where they are read
    from: a wrong shape deep inside is one line naming the field, never an internal error."""
    data = manifest_dict()
    data.setdefault("checks", {}).setdefault("conversion", {})
    data.setdefault("languages", {})
    where = data
    for key in path[:-1]:
        where = where.setdefault(key, {})
    where[path[-1]] = value
    write_fake_bundle(tmp_path / "b", data)
    for command in (["info"], ["info", "--json"], ["verify"]):
        done = outpost(command[0], str(tmp_path / "b"), *command[1:])
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.strip().splitlines() == [
            f"Error: {tmp_path / 'b' / 'bundle.json'}: field {field!r} must be "
            + done.stderr.split(" must be ", 1)[1].strip()
        ]
        assert "internal error" not in done.stderr
