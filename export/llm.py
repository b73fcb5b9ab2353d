"""Base model (+ adapter) -> onnxruntime-genai model folder, with a parity check.

1. Load the base model in full precision with transformers: the embedded SmolLM2 GGUF, a
   .gguf file, a local Hugging Face folder or a hub id (Phi-3 and Llama families first-class).
2. Merge a PEFT adapter into those full-precision weights (never into quantised ones) and
   record the largest logit difference between base+adapter and the merged model.
3. Save a clean folder and run the onnxruntime-genai model builder (int4 CPU by default).
4. Parity: greedy tokens of the ONNX model against the PyTorch model on probe prompts, and
   the chat template as rendered by the runtime against transformers' rendering.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from outpost.export.base import LoadedBase, load_causal_lm, load_tokenizer
from outpost.export.config import LlmConfig
from outpost.runtime.errors import ModelError
from outpost.runtime.files import sha256_files

PROBES = [
    "What is the capital of France?",
    "Name three primary colours.",
    "How do I restart a stuck machine safely?",
]
PROBE_TOKENS = 24


def load_model(base: LoadedBase, adapter: str | None, log):
    """Full-precision model and tokenizer, with the adapter merged. Returns (model, tok, merge)."""
    import torch

    log(f"loading base model {base.model_id}")
    tokenizer = load_tokenizer(base)
    model = load_causal_lm(base, dtype=torch.float32)
    model.eval()
    if base.gguf_file:  # dequantised GGUF: make it serialisable as plain fp32 weights
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    merge = None
    if adapter:
        model, merge = merge_adapter(model, tokenizer, adapter, log)
    return model, tokenizer, merge


def merge_adapter(model, tokenizer, adapter: str, log):
    import torch
    from peft import PeftModel

    folder = Path(adapter)
    if not (folder / "adapter_config.json").is_file():
        raise ModelError(f"{folder} has no adapter_config.json; pass a PEFT adapter folder")
    log(f"merging adapter {folder}")
    try:
        peft_model = PeftModel.from_pretrained(model, str(folder))
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"cannot apply adapter {folder} to this base model: {e}") from None
    ids = tokenizer(PROBES[0], return_tensors="pt").input_ids
    with torch.no_grad():
        before = peft_model(ids).logits
        merged = peft_model.merge_and_unload()
        after = merged(ids).logits
    diff = float((before - after).abs().max())
    weights = [*folder.glob("*.safetensors"), *folder.glob("*.bin")]
    info = {"path": str(folder), "sha256": sha256_files(weights), "merge_max_logit_diff": diff}
    if diff > 1e-2:
        raise ModelError(f"merged adapter changes logits by {diff:.4f}; the adapter does not fit")
    return merged, info


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def build_onnx(hf_dir: Path, out_dir: Path, cache_dir: Path, config: LlmConfig, log) -> dict:
    """Run the onnxruntime-genai model builder in a subprocess; its log goes to a file."""
    cmd = [
        sys.executable,
        "-m",
        "onnxruntime_genai.models.builder",
        "-i",
        str(hf_dir),
        "-o",
        str(out_dir),
        "-p",
        config.precision,
        "-e",
        "cpu",
        "-c",
        str(cache_dir),
    ]
    extra = {}
    if config.precision in ("int4", "int8"):
        extra = {"block_size": config.block_size, "accuracy_level": config.accuracy_level}
        if config.quant_algo != "default":
            extra["algo_config"] = config.quant_algo
        cmd += ["--extra_options", *(f"{k}={v}" for k, v in extra.items())]
    log(f"building the {config.precision} ONNX model (onnxruntime-genai model builder)")
    env = {**os.environ, "ORT_DISABLE_TELEMETRY": "1"}
    cache_dir.mkdir(parents=True, exist_ok=True)
    log_path = cache_dir / "builder.log"
    with open(log_path, "w") as logf:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
        )
        for line in proc.stdout:
            logf.write(line)
            if m := re.match(r"Reading layer (\d+)", line):
                if int(m.group(1)) % 10 == 0:
                    log(f"model builder: layer {m.group(1)}")
            elif line.startswith(("Quantizing", "Saving ONNX model")):
                log(f"model builder: {line.strip()[:60]}")
        returncode = proc.wait()
    if returncode != 0 or not (out_dir / "genai_config.json").is_file():
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        raise ModelError(f"the model builder failed: {' | '.join(tail)}")
    return {"precision": config.precision, "execution_provider": "cpu", **extra}


def parity_check(model, tokenizer, model_dir: Path) -> dict:
    """Greedy tokens of the ONNX model vs the PyTorch model on the probe prompts."""
    import torch

    from outpost.runtime.generate import Generator

    onnx = Generator(model_dir)
    agree = total = prefix = 0
    template_match = True
    per_probe = []
    for text in PROBES:
        messages = [{"role": "user", "content": text}]
        rendered = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        template_match &= rendered == onnx.render(messages)
        ids = tokenizer(rendered, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            out = model.generate(
                ids,
                max_new_tokens=PROBE_TOKENS,
                do_sample=False,
                pad_token_id=tokenizer.eos_token_id,
            )
        ref = out[0, ids.shape[1] :].tolist()
        got = onnx_greedy(onnx, ids[0].tolist(), len(ref))
        same = sum(a == b for a, b in zip(ref, got))
        first_diff = next(
            (i for i, (a, b) in enumerate(zip(ref, got)) if a != b), min(len(ref), len(got))
        )
        agree, total, prefix = agree + same, total + max(len(ref), 1), prefix + first_diff
        per_probe.append(
            {
                "prompt": text,
                "torch": tokenizer.decode(ref),
                "onnx": tokenizer.decode(got),
                "agreement_pct": round(100 * same / max(len(ref), 1), 1),
            }
        )
    return {
        "probes": len(PROBES),
        "tokens_per_probe": PROBE_TOKENS,
        "token_agreement_pct": round(100 * agree / total, 1),
        "prefix_agreement_pct": round(100 * prefix / total, 1),
        "chat_template_match": bool(template_match),
        "details": per_probe,
    }


def onnx_greedy(onnx, ids: list[int], n: int) -> list[int]:
    from outpost.runtime.generate import GenerationSettings

    return onnx.run(ids, GenerationSettings(max_new_tokens=n)).complete().token_ids[:n]


def chat_template_sha256(model_dir: Path) -> str | None:
    for name in ("chat_template.jinja", "tokenizer_config.json"):
        f = model_dir / name
        if f.is_file():
            if name.endswith(".json"):
                template = json.loads(f.read_text()).get("chat_template")
                if not template:
                    continue
                return hashlib.sha256(template.encode()).hexdigest()
            return hashlib.sha256(f.read_bytes()).hexdigest()
    return None
