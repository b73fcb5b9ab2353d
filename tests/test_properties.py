"""Property tests: random bytes, random JSON and random archives fed to `verify`, `info`, `ask`,
`install` and the document readers. Whatever comes in: no traceback, one `Error:` line, an exit
code from the README's table, and nothing written outside the target folder.

The CLI runs in-process (click's CliRunner) so hundreds of inputs take seconds; the counts are
printed (`pytest -s`) and recorded in docs/reliability.md.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fake_bundle import FILES, manifest_dict, write_fake_bundle
from outpost.cli import cli
from outpost.export.documents.ingest import SUPPORTED, ingest, read_document
from outpost.runtime.errors import InputError

EXAMPLES = 300
COUNTS: dict[str, int] = {}
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


def mutated_manifest(draw_value, path: list[str]) -> dict:
    """A valid manifest with the value at `path` replaced (or the key removed)."""
    data = manifest_dict()
    node = data
    for key in path[:-1]:
        node = node[key]
    if draw_value is _REMOVE:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = draw_value
    return data


_REMOVE = object()


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield [*prefix, k]
            yield from _paths(v, (*prefix, k))


MANIFEST_PATHS = list(_paths(manifest_dict()))


def run_cli(args: list[str], input: bytes | None = None):
    result = CliRunner().invoke(cli, args, input=input, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args}: {type(result.exception).__name__}: {result.exception}")
    return result


def assert_clean(result, allowed=(0, 1, 2)):
    assert result.exit_code in allowed, (result.exit_code, result.stderr)
    if result.exit_code != 0:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        assert "Traceback" not in result.stderr


def listing(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def count(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    """Printed with -s at the end of the module; the totals go into docs/reliability.md."""
    yield
    total = sum(COUNTS.values())
    print(
        f"\nproperty inputs run: {total} ({', '.join(f'{k}: {v}' for k, v in sorted(COUNTS.items()))})"
    )


@pytest.mark.slow
@SETTINGS
@given(raw=st.binary(max_size=400) | json_values.map(lambda v: json.dumps(v).encode()))
def test_random_manifests_are_one_error_line(raw):
    with tempfile.TemporaryDirectory() as tmp:
        b = Path(tmp) / "b"
        write_fake_bundle(b)
        (b / "bundle.json").write_bytes(raw)
        before = listing(Path(tmp))
        for args in (["verify", str(b)], ["info", str(b)], ["ask", str(b), "--no-verify", "Why?"]):
            result = run_cli(args)
            assert result.exit_code == 1 and result.stdout == ""
            assert_clean(result, allowed=(1,))
            count("random manifest bytes/JSON x command")
        assert listing(Path(tmp)) == before


@pytest.mark.slow
@SETTINGS
@given(
    where=st.sampled_from(MANIFEST_PATHS),
    value=json_values | st.just(_REMOVE),
)
def test_mutated_manifests_are_refused_or_verified(where, value):
    with tempfile.TemporaryDirectory() as tmp:
        b = Path(tmp) / "b"
        write_fake_bundle(b, mutated_manifest(value, where))
        before = listing(Path(tmp))
        for args in (["verify", str(b)], ["info", str(b)]):
            assert_clean(run_cli(args))
            count("mutated manifest field x command")
        assert listing(Path(tmp)) == before


member_names = st.sampled_from(
    [
        "bundle/bundle.json",
        "bundle/index.usearch",
        "bundle/../evil",
        "/tmp/abs-evil",
        "bundle/model",
        "bundle/model/model.onnx",
        "other/x",
        "bundle",
        "bundle/./a",
        "",
        "bundle/" + "a" * 300,
    ]
) | st.text(min_size=1, max_size=30)
member_kinds = st.sampled_from(
    [
        tarfile.REGTYPE,
        tarfile.DIRTYPE,
        tarfile.SYMTYPE,
        tarfile.LNKTYPE,
        tarfile.CHRTYPE,
        tarfile.FIFOTYPE,
    ]
)


@st.composite
def archives(draw) -> bytes:
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.binary(max_size=2000))  # not a tar at all
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        if choice == 1:  # a real bundle layout with one random change
            manifest = manifest_dict()
            files = dict(FILES)
            files["bundle.json"] = json.dumps(manifest).encode()
            victim = draw(st.sampled_from(sorted(files)))
            files[victim] = draw(st.binary(max_size=300))
            for rel, data in files.items():
                info = tarfile.TarInfo(f"bundle/{rel}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        for _ in range(draw(st.integers(0, 5))):
            info = tarfile.TarInfo(draw(member_names))
            info.type = draw(member_kinds)
            data = draw(st.binary(max_size=100)) if info.type == tarfile.REGTYPE else b""
            info.size = len(data)
            info.linkname = draw(st.sampled_from(["/etc/passwd", "../x", "bundle/bundle.json"]))
            tar.addfile(info, io.BytesIO(data) if data else None)
    raw = buf.getvalue()
    if choice == 3 and raw:  # truncated or corrupted tar
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] + draw(st.binary(max_size=50))
    return raw


@pytest.mark.slow
@SETTINGS
@given(raw=archives())
def test_random_archives_never_install(raw):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "a.tar").write_bytes(raw)
        result = run_cli(["install", str(root / "a.tar"), "--bundles", str(root / "dev")])
        assert result.exit_code == 1
        assert_clean(result, allowed=(1,))
        outside = {p for p in listing(root) if not p.startswith("dev")}
        assert outside == {"a.tar"}
        assert not (root / "dev" / "current").exists()
        assert not list((root / "dev").glob(".incoming-*")) if (root / "dev").exists() else True
        count("random archive")
    assert not Path("/tmp/abs-evil").exists()


@SETTINGS
@given(raw=st.binary(max_size=3000), suffix=st.sampled_from(sorted(SUPPORTED)))
def test_readers_take_any_bytes(raw, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"doc{suffix}"
        path.write_bytes(raw)
        try:
            doc = read_document(path, path.name)
            assert all("\x00" not in b.text for b in doc.blocks)
        except InputError as e:
            assert "\n" not in str(e)
        docs, skipped, _ = ingest([tmp])  # never raises for a bad file: it is skipped with why
        assert len(docs) + len(skipped) == 1
        count("random document bytes")


@pytest.mark.slow
@SETTINGS
@given(question=st.binary(max_size=200))
def test_random_questions_on_stdin(question):
    with tempfile.TemporaryDirectory() as tmp:
        b = Path(tmp) / "b"
        write_fake_bundle(b)
        result = run_cli(["ask", str(b), "--no-verify"], input=question)
        # The fake bundle's models are placeholders: a question that gets past the checks ends
        # in "cannot load"; an empty or non-UTF-8 one is refused first. Never a traceback.
        assert_clean(result, allowed=(1,))
        count("random question bytes")
        shutil.rmtree(b)
