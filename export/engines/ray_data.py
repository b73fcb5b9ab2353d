"""`outpost export --engine ray`: reading, chunking and embedding as Ray Data stages.

The driver (the `outpost export` process) finds the files, as a one-machine export does. Ray
reads and chunks them, one document per unit of work, then embeds the chunks, with the bundle's
ONNX embedder in actors (one per CPU of the cluster, one thread each). The driver gathers the
results by document and chunk number, so the bundle is the same as a one-machine export
(chunks, order, vectors within float rounding). A task or actor lost with its worker is
retried by Ray; a retried document replaces the lost attempt rather than adding to it, because
results are keyed, never appended. (Ray Data's defaults do the retrying: a task lost with its
worker runs again, a lost actor is restarted and its calls retried.)

Without --address a local Ray instance is started for the run; with one, the export joins
that cluster (`ray start --head` on one machine, `ray start --address HEAD:6379` on the others,
each with `outpost-llm[scale]` installed and the documents at the same path). Ray is imported
only here, so `outpost --help`, `ask` and `serve` never load it and the device kit never
carries it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from outpost.export.documents.chunk import Chunk
from outpost.runtime.errors import InputError
from outpost.runtime.log import log, rate

_stdout: int | None = None  # the real stdout while Ray runs (see start)
READ_BATCH = 4  # documents per task: small, so a lost worker costs little
PROBE_SECONDS = 5.0  # for the head at --address to answer before Ray is asked to join it
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMBED_BATCH = 64  # chunks per actor call


def check_address(address: str, timeout: float = PROBE_SECONDS) -> None:
    """InputError unless something at `address` (HOST:PORT, or ray://HOST:PORT) answers as a
    Ray head does, with gRPC over HTTP/2, within `timeout` seconds. ray.init itself retries an
    address that refuses or never answers for minutes without a word; this asks first.
    "auto" and "local" are Ray's own names and are left to it."""
    if address in ("auto", "local"):
        return
    where = address.removeprefix("ray://")
    host, sep, port = where.rpartition(":")
    fix = "start the cluster with `ray start --head` and pass its HOST:PORT, or drop --address"
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--address {address}: not HOST:PORT (e.g. 10.0.0.5:6379); {fix}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(HTTP2_PREFACE)
            frame = s.recv(9)  # a gRPC server answers the preface with its SETTINGS frame
    except TimeoutError:
        raise InputError(f"--address {address}: no answer within {timeout:.0f} s; {fix}") from None
    except OSError as e:
        raise InputError(
            f"--address {address}: cannot connect ({e.strerror or e}); {fix}"
        ) from None
    if len(frame) < 4 or frame[3] != 0x4:
        raise InputError(f"--address {address}: what answers there is not a Ray head; {fix}")


def start(address: str | None, cpus: int | None = None) -> int:
    """Join the cluster at `address`, or start a local one (with `cpus` CPUs, default all);
    the number of CPUs it offers."""
    if address:
        check_address(address)
    try:
        import ray
    except ImportError:
        raise InputError(
            "--engine ray needs Ray: pip install 'outpost-llm[scale]' (never on devices)"
        ) from None
    global _stdout
    # Ray's own messages (e.g. "(raylet) A worker died ...") are written to file descriptor 1;
    # the export's stdout is data (--json), so while Ray runs fd 1 goes to stderr.
    sys.stdout.flush()
    _stdout = os.dup(1)
    os.dup2(2, 1)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    try:
        ray.init(
            address=address,
            num_cpus=None if address else cpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            ignore_reinit_error=True,
        )
    except (ConnectionError, RuntimeError, ValueError) as e:
        _restore_stdout()
        where = address or "a local instance"
        raise InputError(
            f"--engine ray: cannot reach {where} ({str(e).splitlines()[0][:120]}); start the "
            "cluster with `ray start --head` or drop --address"
        ) from None
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.verbose_progress = False
    cpus = int(ray.cluster_resources().get("CPU", 1))
    log(f"ray: {cpus} CPUs on {len(ray.nodes())} node(s)")
    return cpus


def stop() -> None:
    import ray

    ray.shutdown()
    _restore_stdout()


def _restore_stdout() -> None:
    global _stdout
    if _stdout is not None:
        sys.stdout.flush()
        os.dup2(_stdout, 1)
        os.close(_stdout)
        _stdout = None


def _read_batch(batch: dict, chunking: dict) -> dict:
    """Ray task: read and chunk a few documents; one output row per document."""
    from outpost.export.config import ChunkConfig
    from outpost.export.documents.ingest import read_chunks

    config = ChunkConfig(**chunking)
    out: dict[str, list] = {"i": [], "kind": [], "notes": [], "skipped": [], "chunks": []}
    for i, path, source in zip(batch["i"], batch["path"], batch["source"]):
        kind, notes, skipped, chunks = read_chunks(Path(str(path)), str(source), config)
        out["i"].append(int(i))
        out["kind"].append(kind)
        out["notes"].append(json.dumps(notes))
        out["skipped"].append(skipped)
        out["chunks"].append(json.dumps([asdict(c) for c in chunks], ensure_ascii=False))
    return {k: np.array(v, dtype=object if k != "i" else np.int64) for k, v in out.items()}


def read_and_chunk(todo: list[tuple[int, Path, str]], chunking, cpus: int) -> dict[int, tuple]:
    """{document number: (kind, notes, skipped reason or "", chunks)} for each of `todo`."""
    import ray

    if not todo:
        return {}
    rows = [{"i": i, "path": str(p), "source": s} for i, p, s in todo]
    blocks = max(1, min(len(rows), cpus * 4))
    ds = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        _read_batch,
        batch_size=READ_BATCH,
        fn_kwargs={"chunking": asdict(chunking)},
        num_cpus=1,
    )
    results: dict[int, tuple] = {}
    progress = rate("ray: documents", len(todo), extra="chunks")
    for row in ds.iter_rows():
        i = int(row["i"])
        if i in results:  # a retried task's row for a document already gathered
            continue
        chunks = [Chunk(**c) for c in json.loads(row["chunks"])]
        results[i] = (row["kind"], json.loads(row["notes"]), row["skipped"], chunks)
        progress(len(results), len(chunks))
    missing = len(todo) - len(results)
    if missing:
        raise InputError(f"--engine ray: {missing} documents came back from no worker; run again")
    return results


class _Embed:
    """Ray actor: the bundle's ONNX embedder, written from the driver's bytes to a local
    folder (nodes share no disk with the driver)."""

    def __init__(self, files, max_tokens: int):
        import ray

        from outpost.runtime.ask.embed import Embedder

        files = ray.get(files)
        self.folder = Path(tempfile.mkdtemp(prefix="outpost-embedder-"))
        for name, data in files.items():
            (self.folder / name).write_bytes(data)
        self.embedder = Embedder(
            self.folder / "model.onnx", self.folder / "tokenizer.json", max_tokens, threads=1
        )

    def __call__(self, batch: dict) -> dict:
        vectors = self.embedder.embed([str(t) for t in batch["text"]])
        return {"id": batch["id"], "vector": vectors}


def embed(texts: list[str], model: Path, tokenizer: Path, max_tokens: int, cpus: int):
    """Unit-length float32 vectors for `texts`, in order, computed by embedder actors."""
    import ray

    vectors = np.zeros((len(texts), 0), dtype=np.float32)
    if not texts:
        return vectors
    files = ray.put({"model.onnx": model.read_bytes(), "tokenizer.json": tokenizer.read_bytes()})
    items = [{"id": i, "text": t} for i, t in enumerate(texts)]
    blocks = max(1, min(len(items) // EMBED_BATCH + 1, cpus * 8))
    ds = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
        _Embed,
        batch_size=EMBED_BATCH,
        fn_constructor_kwargs={"files": files, "max_tokens": max_tokens},
        concurrency=max(1, cpus),
        num_cpus=1,
    )
    done = np.zeros(len(texts), dtype=bool)
    progress = rate("ray: vectors", len(texts))
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        ids = batch["id"].astype(np.int64)
        if vectors.shape[1] == 0:
            vectors = np.zeros((len(texts), batch["vector"].shape[1]), dtype=np.float32)
        vectors[ids] = batch["vector"]
        done[ids] = True
        progress(int(done.sum()))
    if not done.all():
        raise InputError(f"--engine ray: {int((~done).sum())} chunks were not embedded; run again")
    return vectors
