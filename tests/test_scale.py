"""Exports of large collections: `--update` (only new and changed documents are read and
embedded) and `--engine ray` on a real two-node Ray cluster on this machine, each compared
with a one-machine full rebuild of the same documents."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import EXAMPLES, export

pytestmark = pytest.mark.slow


def _args(tiny_phi3):
    return ("--base", str(tiny_phi3), "--precision", "fp32", "--json")


def _contents(bundle: Path):
    """(chunk rows in id order, their vectors as stored, the documents' records)."""
    from outpost.runtime.ask.retrieve import usearch_index
    from outpost.runtime.bundle.open import open_bundle
    from outpost.runtime.bundle.store import ChunkStore

    m = open_bundle(bundle).manifest
    store = ChunkStore(bundle / m.store.file)
    rows = [r[1:] for r in store.rows()]
    index = usearch_index().restore(str(bundle / m.index.file), view=True)
    keys = np.arange(len(rows), dtype=np.uint64)
    vectors = np.asarray(index.get(keys, dtype=np.float32)).reshape(len(rows), -1)
    return rows, vectors, m.sources.documents


def _retrieved(bundle: Path, questions) -> list[list[int]]:
    from outpost.runtime.ask.assistant import AskConfig, open_assistant

    assistant = open_assistant(bundle, AskConfig(threads=1))
    return [[h.chunk_id for h in assistant.retriever.search(q["question"], 4)] for q in questions]


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs") / "docs"
    shutil.copytree(EXAMPLES / "docs", folder)
    return folder


@pytest.fixture(scope="module")
def full(docs, tiny_phi3, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "bundle"
    done = export(docs, out, *_args(tiny_phi3))
    assert done.returncode == 0, done.stderr[-2000:]
    return out, json.loads(done.stdout)


def test_update_reads_and_embeds_only_what_changed(full, docs, tiny_phi3, tmp_path, questions):
    first, manifest = full
    changed = docs.parent / "changed"
    shutil.copytree(docs, changed)
    target = next(p for p in sorted(changed.rglob("*.md")) if "press" in str(p))
    target.write_text(target.read_text() + "\n\n## Added note\n\nThe ram must be greased weekly.\n")
    removed = sorted(changed.rglob("*.txt"))[0]
    removed.unlink()
    (changed / "new.md").write_text("# New page\n\nThe spare fuse is in the left door pocket.\n")

    updated = tmp_path / "updated"
    done = export(changed, updated, *_args(tiny_phi3), "--update", str(first))
    assert done.returncode == 0, done.stderr[-2000:]
    update = json.loads(done.stdout)["build"]["update"]
    assert update["documents_read"] == 2 and update["documents_removed"] == 1
    assert update["documents_kept"] == len(manifest["sources"]["documents"]) - 2
    rebuilt = tmp_path / "rebuilt"
    done = export(changed, rebuilt, *_args(tiny_phi3))
    assert done.returncode == 0, done.stderr[-2000:]

    rows, vectors, documents = _contents(updated)
    rows_full, vectors_full, documents_full = _contents(rebuilt)
    assert rows == rows_full and documents == documents_full
    sources = {r[0] for r in rows}
    assert removed.relative_to(changed).as_posix() not in sources and "new.md" in sources
    embedded = sum(r[0] in (target.relative_to(changed).as_posix(), "new.md") for r in rows)
    assert update["vectors_embedded"] == embedded and update["vectors_kept"] == len(rows) - embedded
    np.testing.assert_array_equal(vectors, vectors_full)
    assert _retrieved(updated, questions) == _retrieved(rebuilt, questions)


def test_update_of_an_unchanged_collection_embeds_nothing(full, docs, tiny_phi3, tmp_path):
    first, manifest = full
    out = tmp_path / "again"
    done = export(docs, out, *_args(tiny_phi3), "--update", str(first))
    assert done.returncode == 0, done.stderr[-2000:]
    update = json.loads(done.stdout)["build"]["update"]
    assert update["documents_read"] == 0 and update["vectors_embedded"] == 0
    assert _contents(out)[0] == _contents(first)[0]


def _ray(*args, env=None):
    ray = Path(sys.executable).with_name("ray")
    return subprocess.run([str(ray), *args], capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """`ray start --head` plus a second node, 1 CPU each, on this machine; stopped after."""
    if shutil.which("ray", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("Ray is not installed (pip install 'outpost-llm[scale]')")
    import socket

    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    _ray("stop", "--force", env=env)  # nothing left from an earlier run
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    temp = f"/tmp/outpost-ray-{os.getpid()}"  # short: Ray's socket paths must fit 107 bytes
    head = ["start", "--head", "--num-cpus", "1", "--port", port, "--include-dashboard", "false"]
    done = _ray(*head, "--temp-dir", temp, "--disable-usage-stats", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    node = ["start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1"]
    node = _ray(*node, "--disable-usage-stats", env=env)
    try:
        assert node.returncode == 0, node.stderr[-2000:]
        yield f"127.0.0.1:{port}"
    finally:
        _ray("stop", "--force", env=env)
        shutil.rmtree(temp, ignore_errors=True)


def _kill_a_worker(stop: threading.Event, killed: list):
    """Kill -9 the first embedding actor or reading task worker seen (once)."""
    import psutil

    while not stop.is_set() and not killed:
        for p in psutil.process_iter(["pid", "cmdline"]):
            line = " ".join(p.info["cmdline"] or [])
            if line.startswith("ray::") and ("_Embed" in line or "_read_batch" in line):
                os.kill(p.info["pid"], signal.SIGKILL)
                killed.append(line)
                return
        time.sleep(0.05)


def test_ray_engine_on_two_nodes_gives_the_one_machine_bundle(
    cluster, full, docs, tiny_phi3, tmp_path, questions
):
    first, _ = full
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_a_worker, args=(stop, killed))
    killer.start()
    try:
        out = tmp_path / "ray"
        done = export(docs, out, *_args(tiny_phi3), "--engine", "ray", "--address", cluster)
    finally:
        stop.set()
        killer.join()
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads(done.stdout)
    assert manifest["build"]["engine"] == "ray" and manifest["build"]["cpus"] == 2
    assert "ray: 2 CPUs on 2 node(s)" in done.stderr
    assert killed, "no Ray worker was seen to kill"
    rows, vectors, documents = _contents(out)
    rows_one, vectors_one, documents_one = _contents(first)
    assert rows == rows_one and documents == documents_one
    # stored as the index's dtype (f16 here): equal up to one step of it
    assert np.abs(vectors - vectors_one).max() <= 1e-3
    assert _retrieved(out, questions) == _retrieved(first, questions)
    assert "ray: documents: 17/17" in done.stderr and "ray: vectors: " in done.stderr


def test_ray_stages_match_the_one_machine_ones(cluster, full, docs):
    """The two Ray stages against their one-machine counterparts, in this process: the same
    chunks, and float32 vectors within 1e-5."""
    from outpost.export.config import ChunkConfig
    from outpost.export.documents.ingest import discover, read_chunks
    from outpost.export.engines import ray_data as scale
    from outpost.runtime.ask.embed import Embedder
    from outpost.runtime.bundle.open import open_bundle

    first, _ = full
    m = open_bundle(first).manifest
    files, _, _ = discover([docs])
    config = ChunkConfig()
    config.check()
    todo = [(i, p, s) for i, (p, s) in enumerate(files)]
    assert scale.start(cluster) == 2
    try:
        remote = scale.read_and_chunk(todo, config, 2)
        here = {i: read_chunks(p, s, config) for i, p, s in todo}
        assert remote == here
        texts = [c.embedding_text() for i in sorted(here) for c in here[i][3]]
        model, tokenizer = first / m.embedder.file, first / m.embedder.tokenizer
        vectors = scale.embed(texts, model, tokenizer, m.embedder.max_tokens, 2)
    finally:
        scale.stop()
    local = Embedder(model, tokenizer, m.embedder.max_tokens).embed(texts)
    assert vectors.shape == local.shape and np.abs(vectors - local).max() <= 1e-5
