"""Base model (+ adapter) -> onnxruntime-genai model folder.

1. Load the base model in full precision with transformers: the embedded SmolLM2 GGUF, a
   .gguf file, a local Hugging Face folder or a hub id (Phi-3 and Llama families first-class).
2. Merge a PEFT adapter into those full-precision weights (never into quantised ones) and
   record the largest logit difference between base+adapter and the merged model.
3. Save a clean folder and run the onnxruntime-genai model builder (int4 CPU by default).
4. The conversion gate (export/llm/gate.py) compares the ONNX model with the full-precision one;
   the chat template as rendered by the runtime is checked against transformers' rendering.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

from outpost.export.config import LlmConfig
from outpost.export.llm.base import LoadedBase, load_causal_lm, load_tokenizer
from outpost.runtime.ask.generate import MODEL_FACTS
from outpost.runtime.errors import ModelError
from outpost.runtime.files import sha256_files, write_atomic

PROBE = "How do I restart a stuck machine safely?"  # merge check input


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
    ids = tokenizer(PROBE, return_tensors="pt").input_ids
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


def build_onnx(
    hf_dir: Path, out_dir: Path, cache_dir: Path, config: LlmConfig, log, lora: Path | None = None
) -> dict:
    """Run the onnxruntime-genai model builder in a subprocess; its log goes to a file. With
    `lora`, the model gets that adapter's LoRA structure (export/llm/lora.py opens it up)."""
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
    extra: dict[str, int | str] = {}
    if config.precision in ("int4", "int8"):
        extra = {"block_size": config.block_size, "accuracy_level": config.accuracy_level}
        if config.quant_algo != "default":
            extra["algo_config"] = config.quant_algo
    options = dict(extra)
    if lora:
        from outpost.export.llm.lora import lora_nodes

        options["adapter_path"] = str(lora)
        if config.precision in ("int4", "int8"):
            options["nodes_to_exclude"] = ",".join(lora_nodes(hf_dir, lora))
    if options:
        cmd += ["--extra_options", *(f"{k}={v}" for k, v in options.items())]
    log(f"building the {config.precision} ONNX model (onnxruntime-genai model builder)")
    if note := memory_note(hf_dir, config.precision, config.quant_algo):
        log(note)
    env = {**os.environ, "ORT_DISABLE_TELEMETRY": "1"}
    cache_dir.mkdir(parents=True, exist_ok=True)
    log_path = cache_dir / "builder.log"
    with open(log_path, "w") as logf:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
        )
        assert proc.stdout is not None  # stdout=PIPE
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
    if embed_in_place(out_dir):
        log("the embedding reads the LM head's weights in place (one copy less in memory)")
    hf_config = json.loads((hf_dir / "config.json").read_text())
    switch = graph_rope_switch(out_dir)
    if switch and long_factors_differ(hf_config):
        (out_dir / MODEL_FACTS).write_text(json.dumps({"long_rope_switch": switch}) + "\n")
    return {"precision": config.precision, "execution_provider": "cpu", **extra}


def builder_memory(hf_dir: Path, precision: str, quant_algo: str = "default") -> int:
    """Bytes the model builder is expected to hold at its peak, at least: the weights as saved
    (fp32 from the export); for int4/int8 the whole graph copied to a protobuf in fp32 before it
    is quantised (`ir.to_proto` in onnxruntime-genai 0.18's builder), and for the k-quant
    methods the largest matrix's float64 work arrays. Measured on the 24 GB machine from bf16
    checkpoints of the Phi-4-mini shape (docs/decisions.md): 10.5 GB for 8 of its 32 layers
    until the k-quant of its 200064 x 3072 LM head, then killed past 23.4 GB; 22 bytes for each
    of that matrix's parameters is what the jump says."""
    weights, largest = 0, 0
    for f in hf_dir.glob("*.safetensors"):
        weights += f.stat().st_size
        for shape in safetensors_shapes(f):
            largest = max(largest, math.prod(shape))
    params = weights // 4  # the export saves fp32
    quantised = precision in ("int4", "int8")
    k_quant = quantised and quant_algo.startswith("k_quant")
    return weights + (4 * params if quantised else 0) + (22 * largest if k_quant else 0) + 2**30


def safetensors_shapes(path: Path) -> list[list[int]]:
    """The tensor shapes a .safetensors file's header declares (the header alone is read)."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    return [v["shape"] for k, v in header.items() if k != "__metadata__"]


def available_memory() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def memory_note(
    hf_dir: Path, precision: str, quant_algo: str, available: int | None = None
) -> str | None:
    """A line for the log when the builder will likely not fit in memory (it is then killed
    without a message of its own)."""
    need, free = builder_memory(hf_dir, precision, quant_algo), available or available_memory()
    if free is None or need <= free:
        return None
    return (
        f"note: the model builder needs about {need / 1e9:.0f} GB of memory for this model and "
        f"{free / 1e9:.0f} GB are available; if it is killed, export on a machine with more"
    )


def reload_saved(hf_dir: Path):
    """The full-precision model as saved for the builder (the same weights), in fp32."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()


def _rope(config: dict) -> dict:
    """A config.json's rotary settings: `rope_scaling` (transformers 4) or `rope_parameters`."""
    return config.get("rope_scaling") or config.get("rope_parameters") or {}


def long_rope_switch(config: dict) -> int:
    """Where a LongRoPE model (Phi-3.5-mini, Phi-4-mini) turns from its short factors to its
    long ones (original_max_position_embeddings), from its config.json as a dict, or 0."""
    rope = _rope(config)
    if rope.get("rope_type", rope.get("type")) != "longrope":
        return 0
    return int(
        rope.get("original_max_position_embeddings") or config["original_max_position_embeddings"]
    )


def long_factors_differ(config: dict) -> bool:
    """Whether the long rotation differs from the short one: Phi-4-mini's two factor lists are
    the same list (and the scale of both comes from the same lengths), so crossing its switch
    changes nothing and the runtime need not read the sequence again."""
    rope = _rope(config)
    return rope.get("short_factor") != rope.get("long_factor") or rope.get(
        "short_mscale"
    ) != rope.get("long_mscale")


def embed_in_place(model_dir: Path) -> bool:
    """With tied embeddings the builder's graph looks up input tokens in the 8-bit LM head
    through a Reshape of its [vocab, blocks, block] initializer to [vocab, hidden]. onnxruntime
    folds that Reshape into a second copy of the table when it loads (28 MB for SmolLM2's 49k
    words) and keeps the first resident for the head. Here the lookup reads the 3-D initializer
    itself (blocks quantised along its last axis, then one Reshape of the looked-up rows): the
    same numbers, the logits the same to the bit, the table's copy gone (its scales and zero
    points, an eighth of its size, are still folded into 3-D copies). Returns whether it changed
    the graph; a graph of another shape is left as it is."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    path = model_dir / "model.onnx"
    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    made = {o: n for n in graph.node for o in n.output}
    weights = {i.name: list(i.dims) for i in graph.initializer}
    gather = next((n for n in graph.node if n.op_type == "GatherBlockQuantized"), None)
    if gather is None or len(gather.input) < 3:
        return False
    attrs = {a.name: helper.get_attribute_value(a) for a in gather.attribute}
    reshape = made.get(gather.input[0])
    if (
        attrs.get("bits") != 8
        or attrs.get("quantize_axis", 1) != 1
        or attrs.get("gather_axis", 0) != 0
        or reshape is None
        or reshape.op_type != "Reshape"
        or len(weights.get(reshape.input[0], [])) != 3
        or weights[reshape.input[0]][2] != attrs.get("block_size")
        or sum(reshape.output[0] in n.input for n in graph.node) != 1
    ):
        return False
    nodes = []
    for k in range(2, len(gather.input)):  # scales, zero points: [vocab, blocks] -> [.., .., 1]
        name = gather.input[k]
        shape = f"{name}/blocks_shape"
        graph.initializer.append(numpy_helper.from_array(np.array([0, 0, 1], np.int64), shape))
        nodes.append(
            helper.make_node("Reshape", [name, shape], [f"{name}/blocks"], f"{name}/Reshape")
        )
        gather.input[k] = f"{name}/blocks"
    out = gather.output[0]
    gather.input[0], gather.output[0] = reshape.input[0], f"{out}/blocks"
    for a in gather.attribute:
        if a.name == "quantize_axis":
            a.i = 2
    rows = f"{out}/rows_shape"
    graph.initializer.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), rows))
    after = helper.make_node("Reshape", [f"{out}/blocks", rows], [out], f"{gather.name}/Rows")
    for node in reversed(nodes):  # before the lookup, its Rows after it
        graph.node.insert(list(graph.node).index(gather), node)
    graph.node.insert(list(graph.node).index(gather) + 1, after)
    graph.node.remove(reshape)
    target = made.get(reshape.input[1])  # its target shape, when a Constant node made it
    if target is not None and not any(reshape.input[1] in n.input for n in graph.node):
        graph.node.remove(target)
    write_atomic(path, model.SerializeToString())
    return True


def graph_rope_switch(model_dir: Path) -> int:
    """The total length past which the exported graph rotates with the long factors (the
    builder's rope-cache subgraph compares it with a constant), or 0: no LongRoPE in it. The
    runtime reads the whole sequence again when generation crosses it (runtime/ask/generate.py)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(model_dir / "model.onnx"), load_external_data=False).graph
    constants = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute:
            constants[node.output[0]] = node.attribute[0].t
    for node in graph.node:
        if node.op_type == "Greater" and "rope_caches" in node.name:
            value = constants.get(node.input[1])
            if value is not None:
                return int(numpy_helper.to_array(value).reshape(-1)[0])
    return 0


def chat_template_match(tokenizer, generator) -> bool:
    """The runtime renders a conversation exactly as transformers does."""
    messages = [
        {"role": "system", "content": "You answer from passages."},
        {"role": "user", "content": "How do I restart a stuck machine safely?"},
    ]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return rendered == generator.render(messages)


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
