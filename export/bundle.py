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

import numpy as np

from outpost.export import gate
from outpost.export.base import LoadedBase, resolve_base
from outpost.export.chunk import chunk_documents
from outpost.export.config import ExportConfig
from outpost.export.embedder import export_embedder
from outpost.export.index import (
    OFF_TOPIC,
    build_index,
    calibrate_threshold,
    pseudo_question,
)
from outpost.export.ingest import ingest
from outpost.export.libraries import quiet_libraries, versions
from outpost.export.llm import (
    build_onnx,
    chat_template_match,
    chat_template_sha256,
    load_model,
    parameter_count,
)
from outpost.export.lora import ADAPTERS_DIR, SUFFIX, open_slots, template, write_adapter
from outpost.runtime.bundle import Bundle
from outpost.runtime.errors import InputError
from outpost.runtime.evaluate import evaluate, load_questions
from outpost.runtime.files import new_folder, sha256_file
from outpost.runtime.log import counter, log
from outpost.runtime.manifest import (
    MANIFEST,
    SCHEMA_VERSION,
    AdapterInfo,
    EmbedderInfo,
    FileEntry,
    GenerationInfo,
    IndexInfo,
    Manifest,
    ModelInfo,
    RetrievalInfo,
    Sources,
    StoreInfo,
    conversion_in_words,
    section,
)
from outpost.runtime.retrieve import Retriever
from outpost.runtime.store import write_store

SELF_CHECK_QUERIES = 200


def check_replaceable(out: Path) -> None:
    """--force replaces only a bundle this tool made, holding nothing but its own files."""
    from outpost.runtime.bundle import check_files, open_bundle
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

    log("reading documents")
    docs, skipped, root = ingest(config.docs, counter("documents"), config.exclude)
    for s in skipped:
        log(f"skipped {s.path}: {s.reason}")
    for d in docs:
        for note in d.notes:
            log(f"note {d.source}: {note}")
    if skipped and config.strict:
        raise InputError(
            f"{len(skipped)} file(s) skipped ({skipped[0].path}: {skipped[0].reason}); fix them or drop --strict"
        )
    if not docs:
        detail = f" ({skipped[0].path}: {skipped[0].reason})" if skipped else ""
        raise InputError(
            f"no readable documents in {', '.join(config.docs)}{detail}; add .md, .txt, .html, .pdf or .docx files"
        )
    chunks = chunk_documents(docs, config.chunk)
    log(f"{len(docs)} documents -> {len(chunks)} chunks ({len(skipped)} files skipped)")

    base = resolve_base(config.llm.base)  # fail on an unknown model before any heavy work
    if out.exists():
        log(f"replacing the bundle at {out} (--force)")
    with new_folder(out) as tmp:  # renamed into place only when everything is written
        retrieval = _retrieval_part(tmp, config, chunks)
        model = _llm_part(tmp, config, base, chunks)
        manifest = _manifest(config, docs, skipped, root, chunks, retrieval, model)
        if config.questions:
            manifest.checks["eval"] = _evaluate(tmp, manifest, config.questions)
        manifest.export_seconds = round(time.perf_counter() - started, 1)
        _write_manifest(tmp, manifest)
        if config.sign:
            from outpost.export.sign import sign_manifest

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


def _retrieval_part(tmp: Path, config: ExportConfig, chunks) -> RetrievalPart:
    """Embedder (ONNX), chunk vectors, index, chunk store, grounding threshold, self-check."""
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
    vectors = emb.embedder.embed(texts, progress=counter("embedding chunks"))
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
    from outpost.runtime.generate import Generator

    llm = config.llm
    switchable = {name: Path(folder) for name, folder in llm.switchable.items()}
    model, tokenizer, merge = load_model(base, llm.merged, log)
    params = parameter_count(model)
    work = tmp / ".work"
    hf_dir = work / "hf"
    log("saving full-precision weights for the model builder")
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    lora = template(switchable) if switchable else None
    quant = build_onnx(hf_dir, tmp / "model", work / "cache", llm, log, lora=lora)
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


def _manifest(
    config, docs, skipped, root, chunks, retrieval: RetrievalPart, model: ModelPart
) -> Manifest:
    """Everything but the file list, which is written last (_write_manifest)."""
    return Manifest(
        schema=SCHEMA_VERSION,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        libraries=versions(),
        model=model.info,
        embedder=retrieval.embedder,
        chunker={**config.chunk.as_dict(), "chunks": len(chunks)},
        index=retrieval.index,
        store=StoreInfo(file="chunks.sqlite", count=len(chunks), fts="fts5 unicode61"),
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
        checks={"conversion": model.conversion, "retrieval": retrieval.check},
        sources=Sources(
            root=str(root),
            documents=[
                {"path": d.source, "type": d.kind, "sha256": sha256_file(d.path)} for d in docs
            ],
            skipped=[asdict(s) for s in skipped],
        ),
        files={},
        size_bytes=0,
    )


def _evaluate(tmp: Path, manifest: Manifest, questions: str) -> dict:
    from outpost.runtime.assistant import AskConfig, Assistant

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
