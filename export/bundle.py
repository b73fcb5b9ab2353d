"""`outpost export`: documents + base model -> a verified bundle folder, written atomically.

Everything is built in a temporary folder beside the target and renamed into place at the
end; an interrupted export never leaves a half bundle at the target path.
"""

from __future__ import annotations

import gc
import json
import random
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import numpy as np

import outpost.models
from outpost.export.config import ExportConfig
from outpost.export.documents.chunk import Chunk
from outpost.export.documents.ingest import Skipped, discover, hash_documents, read_chunks
from outpost.export.documents.languages import chunk_languages, declared
from outpost.export.engines import ray_data as scale
from outpost.export.libraries import quiet_libraries, versions
from outpost.export.llm import gate
from outpost.export.llm.base import LoadedBase, resolve_base
from outpost.export.llm.convert import (
    build_onnx,
    chat_template_match,
    chat_template_sha256,
    load_model,
    parameter_count,
    reload_saved,
)
from outpost.export.llm.lora import ADAPTERS_DIR, SUFFIX, open_slots, template, write_adapter
from outpost.export.retrieval.embedder import export_embedder
from outpost.export.retrieval.index import (
    OFF_TOPIC,
    build_index,
    calibrate_threshold,
    pseudo_question,
)
from outpost.export.retrieval.update import EXACT_DTYPES, Previous, open_previous
from outpost.runtime.ask.evaluate import evaluate, load_questions
from outpost.runtime.ask.retrieve import Retriever
from outpost.runtime.bundle.manifest import (
    MANIFEST,
    SCHEMA_VERSION,
    AdapterInfo,
    ConversionCheck,
    EmbedderInfo,
    FileEntry,
    GenerationInfo,
    IndexInfo,
    Manifest,
    ModelInfo,
    RankerInfo,
    RetrievalInfo,
    Sources,
    StoreInfo,
    conversion_in_words,
    section,
)
from outpost.runtime.bundle.open import Bundle
from outpost.runtime.bundle.store import write_store
from outpost.runtime.errors import InputError
from outpost.runtime.files import new_folder, sha256_file
from outpost.runtime.log import counter, log, rate

SELF_CHECK_QUERIES = 200


def check_replaceable(out: Path) -> None:
    """--force replaces only a bundle this tool made, holding nothing but its own files."""
    from outpost.runtime.bundle.open import check_files, open_bundle
    from outpost.runtime.errors import OutpostError

    try:
        bundle = open_bundle(out, check_sizes=False)
    except OutpostError:
        raise InputError(
            f"{out} exists and is not a bundle made by `outpost export`; --force replaces only "
            "bundles; choose another --out or remove it yourself"
        ) from None
    foreign = [
        p.path for p in check_files(out, bundle.manifest, hashes=False) if p.kind == "unexpected"
    ]
    if foreign:
        raise InputError(
            f"{out} holds files that are not part of its bundle ({', '.join(foreign[:3])}); "
            "--force would delete them; move them away or choose another --out"
        )


def build_bundle(config: ExportConfig) -> Manifest:
    """Build the bundle; return its manifest. Raises OutpostError subclasses on bad input."""
    config.check()
    quiet_libraries()
    started = time.perf_counter()
    out = Path(config.out)

    previous = (
        open_previous(config.update, [Path(t) for t in config.trust], config.sign)
        if config.update
        else None
    )
    try:
        cpus = scale.start(config.address) if config.engine == "ray" else 0
        try:
            return _build(config, out, previous, cpus, started)
        finally:
            if cpus:
                scale.stop()
    finally:
        if previous is not None:
            previous.close()


@dataclass
class Collected:
    documents: list[dict]  # the manifest's sources.documents
    skipped: list
    root: Path
    chunks: list
    origin: list[int | None]  # per chunk: its id in --update's bundle, or None if read now
    build: dict  # engine and reuse, for the manifest


def _collect(config: ExportConfig, previous: Previous | None, cpus: int) -> Collected:
    """Find the documents; keep the unchanged ones' chunks from --update's bundle; read and
    chunk the others, here or on Ray; everything in discovery order."""
    log("finding documents")
    files, skipped, root = discover(config.docs, config.exclude)
    files, hashes = hash_documents(files, skipped)  # one gone or replaced since: skipped
    same_chunking = previous is not None and previous.chunker == config.chunk.as_dict()
    keep = {
        i for i, (_, source) in enumerate(files)
        if previous is not None and same_chunking and previous.unchanged(source, hashes[i])
    }  # fmt: skip
    todo = [(i, p, source) for i, (p, source) in enumerate(files) if i not in keep]
    log(f"reading {len(todo)} documents" + (f" ({len(keep)} unchanged, kept)" if keep else ""))
    if cpus:
        read = scale.read_and_chunk(todo, config.chunk, cpus)
    else:
        progress, read = counter("documents"), {}
        for n, (i, p, source) in enumerate(todo, 1):
            read[i] = read_chunks(p, source, config.chunk)
            progress(n, len(todo))
    documents: list[dict] = []
    chunks: list[Chunk] = []
    origin: list[int | None] = []
    for i, (_, source) in enumerate(files):
        if i in keep:
            assert previous is not None  # nothing is kept without it
            kind = previous.documents[source].get("type", "")
            declared_language = previous.documents[source].get("language")
            kept = previous.chunks[source]
            chunks.extend(c for _, c in kept)
            origin.extend(cid for cid, _ in kept)
        else:
            kind, notes, reason, new = read[i]
            declared_language = declared(files[i][0])
            for note in notes:
                log(f"note {source}: {note}")
            if reason:
                skipped.append(Skipped(source, reason))
                continue
            chunks.extend(new)
            origin.extend([None] * len(new))
        documents.append(
            {"path": source, "type": kind, "sha256": hashes[i], "declared": declared_language}
        )
    build: dict[str, object] = {"engine": config.engine, "cpus": cpus or None}
    if previous is not None:
        build["update"] = {
            "previous": str(previous.path),
            "same_chunking": same_chunking,
            "documents_kept": len(keep),
            "documents_read": len(todo),
            "documents_removed": len(set(previous.documents) - {s for _, s in files}),
            "chunks_kept": sum(o is not None for o in origin),
        }
    return Collected(documents, skipped, root, chunks, origin, build)


def _build(config, out: Path, previous, cpus: int, started: float) -> Manifest:
    found = _collect(config, previous, cpus)
    skipped, chunks = found.skipped, found.chunks
    for s in skipped:
        log(f"skipped {s.path}: {s.reason}")
    if skipped and config.strict:
        raise InputError(
            f"{len(skipped)} file(s) skipped ({skipped[0].path}: {skipped[0].reason}); fix them or drop --strict"
        )
    if not found.documents:
        detail = f" ({skipped[0].path}: {skipped[0].reason})" if skipped else ""
        raise InputError(
            f"no readable documents in {', '.join(config.docs)}{detail}; add .md, .txt, .html, .pdf, .docx, .odt or .epub files"
        )
    log(f"{len(found.documents)} documents -> {len(chunks)} chunks ({len(skipped)} files skipped)")
    languages = chunk_languages(chunks, found.documents, config.language, log)

    base = resolve_base(config.llm.base)  # fail on an unknown model before any heavy work
    if out.exists():
        log(f"replacing the bundle at {out} (--force)")
    with new_folder(out) as tmp:  # renamed into place only when everything is written
        retrieval = _retrieval_part(tmp, config, found, previous, cpus)
        model = _llm_part(tmp, config, base, chunks)
        manifest = _manifest(config, found, retrieval, model)
        manifest.languages = languages
        manifest.ranker = _ranker_part(tmp, config)
        if config.questions:
            manifest.checks["eval"] = _evaluate(tmp, manifest, config.questions)
        manifest.export_seconds = round(time.perf_counter() - started, 1)
        _write_manifest(tmp, manifest)
        if config.sign:
            from outpost.export.ship.sign import sign_manifest

            log(f"signed with key {sign_manifest(tmp, Path(config.sign))}")
    log(f"bundle written to {out} in {manifest.export_seconds} s")
    return manifest


@dataclass
class RetrievalPart:
    embedder: EmbedderInfo
    index: IndexInfo
    threshold: float
    calibration: dict
    check: dict


def _vectors(
    emb, model_file: Path, texts: list[str], found: Collected, previous, cpus: int
) -> np.ndarray:
    """The chunks' vectors: kept from --update's bundle where that is exact (same embedder,
    an index that stores them exactly), embedded here or on Ray otherwise."""
    sha = sha256_file(model_file)
    usable = previous is not None and previous.embedder_sha256 == sha
    usable = usable and previous.index_dtype in EXACT_DTYPES
    kept = [k for k, o in enumerate(found.origin) if o is not None] if usable else []
    vectors = np.zeros((len(texts), emb.config["dim"]), dtype=np.float32)
    if kept:
        vectors[kept] = previous.vectors([found.origin[k] for k in kept])
    new = sorted(set(range(len(texts))) - set(kept))
    fresh = [texts[k] for k in new]
    log(f"embedding {len(new)} chunks" + (f" ({len(kept)} vectors kept)" if kept else ""))
    if cpus and fresh:
        tokenizer = model_file.parent / "tokenizer.json"
        vectors[new] = scale.embed(fresh, model_file, tokenizer, emb.config["max_tokens"], cpus)
    elif fresh:
        vectors[new] = emb.embedder.embed(fresh, progress=rate("embedding chunks", len(fresh)))
    if "update" in found.build:
        why = None
        if previous.embedder_sha256 != sha:
            why = "the embedder differs from the previous bundle's"
        elif previous.index_dtype not in EXACT_DTYPES:
            why = f"the previous index stores {previous.index_dtype} vectors, not exactly"
        found.build["update"].update(
            vectors_kept=len(kept), vectors_embedded=len(new), vectors_not_kept_because=why
        )
    return vectors


def _retrieval_part(
    tmp: Path, config: ExportConfig, found: Collected, previous, cpus: int
) -> RetrievalPart:
    """Embedder (ONNX), chunk vectors, index, chunk store, grounding threshold, self-check."""
    chunks = found.chunks
    texts = [c.embedding_text() for c in chunks]
    rng = random.Random(0)
    sample_ids = sorted(rng.sample(range(len(chunks)), min(SELF_CHECK_QUERIES, len(chunks))))

    emb = export_embedder(
        config.embedder,
        tmp / "embedder",
        [texts[i] for i in sample_ids],
        log,
        config.embedder_precision,
    )
    vectors = _vectors(emb, tmp / emb.config["file"], texts, found, previous, cpus)
    queries = [pseudo_question(chunks[i]) for i in sample_ids]
    query_vectors = emb.embedder.embed(queries)
    index_info = build_index(vectors, query_vectors, tmp / "index.usearch", log)
    # Bind the index to the embedder that made its vectors and to the chunk store.
    index_info["embedder"] = {
        "sha256": sha256_file(tmp / emb.config["file"]),
        "dim": emb.config["dim"],
        "normalize": emb.config["normalize"],
    }
    write_store(
        ((c.source, c.heading, c.start, c.end, c.text) for c in chunks), tmp / "chunks.sqlite"
    )

    log("calibrating the grounding threshold and checking retrieval")
    retriever = Retriever(
        tmp / "index.usearch",
        tmp / "chunks.sqlite",
        emb.config["dim"],
        emb.embedder,
        index_info["expansion_search"],
        exact=index_info["search"] == "exact",
    )
    best_in = np.array([retriever.best_score(q) for q in queries])
    best_off = np.array([retriever.best_score(q) for q in OFF_TOPIC])
    threshold, calibration = calibrate_threshold(best_in, best_off)
    k = config.top_k

    def hit_rate(hybrid: bool) -> float:
        hits = sum(
            i in {h.chunk_id for h in retriever.search(q, k, hybrid=hybrid)}
            for i, q in zip(sample_ids, queries)
        )
        return round(hits / len(queries), 4)

    check = {
        "queries": len(queries),
        "query": "first sentence of a sampled chunk",
        f"dense_hit_at_{k}": hit_rate(False),
        f"hybrid_hit_at_{k}": hit_rate(True),
        "off_topic_refused": round(float(np.mean(best_off < threshold)), 4),
        "in_corpus_refused": round(float(np.mean(best_in < threshold)), 4),
    }
    embedder, index = section(EmbedderInfo, emb.config), section(IndexInfo, index_info)
    return RetrievalPart(embedder, index, threshold, calibration, check)


@dataclass
class ModelPart:
    info: ModelInfo
    conversion: dict


def _llm_part(tmp: Path, config: ExportConfig, base: LoadedBase, chunks) -> ModelPart:
    """Base model (+ adapters) -> onnxruntime-genai folder (+ adapter files), each passing the
    conversion gate against its full-precision self."""
    from outpost.runtime.ask.generate import Generator

    llm = config.llm
    switchable = {name: Path(folder) for name, folder in llm.switchable.items()}
    model, tokenizer, merge = load_model(base, llm.merged, log)
    params = parameter_count(model)
    work = tmp / ".work"
    hf_dir = work / "hf"
    log("saving full-precision weights for the model builder")
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    del model  # the builder holds the weights twice; a third copy here would not fit beside them
    gc.collect()
    lora = template(switchable) if switchable else None
    quant = build_onnx(hf_dir, tmp / "model", work / "cache", llm, log, lora=lora)
    model = reload_saved(hf_dir)  # the same weights, for the gate
    shutil.rmtree(work)
    adapters, files = {}, {}
    if switchable:
        slots = open_slots(tmp / "model")
        for name, folder in switchable.items():
            rel = f"{ADAPTERS_DIR}/{name}{SUFFIX}"
            log(f"writing runtime adapter {name} ({folder})")
            adapters[name] = {"file": rel, **write_adapter(folder, slots, tmp / rel)}
            files[name] = tmp / rel
    generator = Generator(tmp / "model", adapters=files)
    prompts = gate.samples(chunks, generator)
    what = "model" + (" (adapter merged)" if merge else "")
    log(
        f"conversion check: {what} against full precision on {len(prompts)} of the bundle's prompts"
    )
    conversion = gate.judge(gate.measure(model, tokenizer, generator, prompts), llm.precision)
    gate.check_rope(conversion, model.config.to_dict(), tmp / "model")
    conversion["chat_template_match"] = chat_template_match(tokenizer, generator)
    log(conversion_in_words(conversion))
    gate.enforce(conversion, what, llm.allow_degraded_model)
    for name, folder in switchable.items():
        from peft import PeftModel

        peft_model = PeftModel.from_pretrained(model, str(folder))
        peft_model.eval()
        report = gate.judge(
            gate.measure(peft_model, tokenizer, generator, prompts, adapter=name), llm.precision
        )
        model = peft_model.unload()
        log(f"adapter {name}: " + conversion_in_words(report))
        gate.enforce(report, f"adapter {name}", llm.allow_degraded_model)
        adapters[name]["conversion"] = report
    del model, generator
    gc.collect()
    genai = json.loads((tmp / "model" / "genai_config.json").read_text())
    assert llm.base is not None  # export_cmd fills it in (export/llm/base.py, base_for)
    info = ModelInfo(
        dir="model",
        base=base.model_id,
        source=llm.base,  # as given to --base: what the trainer and benchmarks reload
        base_sha256=base.weights_sha256,
        parameters=params,
        adapter=merge,
        quantization=quant,
        chat_template_sha256=chat_template_sha256(tmp / "model"),
        context_length=genai["model"]["context_length"],
        type=genai["model"]["type"],
        adapters={name: section(AdapterInfo, a) for name, a in adapters.items()},
    )
    return ModelPart(info, conversion)


def _manifest(config, found: Collected, retrieval: RetrievalPart, model: ModelPart) -> Manifest:
    """Everything but the file list, which is written last (_write_manifest)."""
    return Manifest(
        schema=SCHEMA_VERSION,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        libraries=versions(),
        model=model.info,
        embedder=retrieval.embedder,
        chunker={**config.chunk.as_dict(), "chunks": len(found.chunks)},
        index=retrieval.index,
        store=StoreInfo(file="chunks.sqlite", count=len(found.chunks), fts="fts5 unicode61"),
        retrieval=RetrievalInfo(
            top_k=config.top_k,
            grounding_threshold=retrieval.threshold,
            calibration=retrieval.calibration,
        ),
        generation=GenerationInfo(
            max_context=config.max_context,
            max_new_tokens=config.max_new_tokens,
            repetition_penalty=config.repetition_penalty,
        ),
        # the gate's report: what ConversionCheck declares, and more
        checks={
            "conversion": cast(ConversionCheck, model.conversion),
            "retrieval": retrieval.check,
        },
        sources=Sources(
            root=str(found.root),
            documents=found.documents,
            skipped=[asdict(s) for s in found.skipped],
        ),
        files={},
        size_bytes=0,
        build=found.build,
    )


# The shipped ranker (repo models/ranker/, installed as outpost.models): crossrank.py writes it.
RANKER = Path(outpost.models.__file__).resolve().parent / "ranker"
RANKER_FILES = ("model.onnx", "tokenizer.json", "ranker.json")


def _ranker_part(tmp: Path, config) -> RankerInfo | None:
    """The bundle's own copy of the learned line ranker (listed, hashed and signed with every
    other file), unless --no-ranker; None where this build has none (`make ranker` makes it)."""
    if not config.ranker:
        return None
    if not all((RANKER / f).is_file() for f in RANKER_FILES):
        log(f"no learned line ranker in {RANKER} (make ranker builds it); the features rank lines")
        return None
    (tmp / "ranker").mkdir()
    for f in RANKER_FILES:
        shutil.copyfile(RANKER / f, tmp / "ranker" / f)
    record = json.loads((RANKER / "ranker.json").read_text())
    return RankerInfo(
        dir="ranker",
        model="model.onnx",
        tokenizer="tokenizer.json",
        sha256=sha256_file(tmp / "ranker" / "model.onnx"),
        held_out=record.get("held_out", {}),
    )


def _evaluate(tmp: Path, manifest: Manifest, questions: str) -> dict:
    from outpost.runtime.ask.assistant import AskConfig, Assistant

    log(f"evaluating the bundle on {questions}")
    assistant = Assistant(Bundle(tmp, manifest), AskConfig())
    report = evaluate(assistant, load_questions(questions), counter("questions"))
    report["questions_file"] = str(questions)
    report["rows"] = [
        {k: r[k] for k in ("id", "correct", "refused", "cited")} for r in report["rows"]
    ]
    log(f"eval: accuracy {report['accuracy']}, refusal rate {report['refusal_rate']}")
    return report


def _write_manifest(tmp: Path, manifest: Manifest) -> None:
    files = {}
    for f in sorted(tmp.rglob("*")):
        if f.is_file() and f.name != MANIFEST:
            files[f.relative_to(tmp).as_posix()] = FileEntry(f.stat().st_size, sha256_file(f))
    manifest.files = files
    manifest.size_bytes = sum(v.size for v in files.values())
    text = manifest.to_json()
    Manifest.from_json(text)  # what the runtime will read: every field present and typed
    (tmp / MANIFEST).write_text(text, encoding="utf-8")
