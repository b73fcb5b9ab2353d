"""Adapters switched at run time (onnxruntime-genai Multi-LoRA) instead of merged.

1. The model builder converts the base once with the LoRA structure of the adapters
   (`--extra_options adapter_path=...`): beside each targeted projection, a `lora_A` and a
   `lora_B` MatMul whose output is added to the projection's.
2. `open_slots` turns those two MatMuls' weights into model inputs, named
   `model.layers.N.{attn,mlp}.PROJ.lora_{A,B}.weight`, shaped [in, rank] / [rank, out] with the
   rank free, each defaulting to an empty tensor: with no adapter active the LoRA path adds
   zeros and the model is the base (checked by the conversion gate).
3. `write_adapter` writes one `.onnx_adapter` file per PEFT adapter: A transposed, B scaled by
   alpha / r and transposed, fused projections (Phi-3's qkv_proj, gate_up_proj) split the way
   the builder splits them. The runtime loads them with `og.Adapters` and activates one per
   generator, so concurrent requests never mix adapters and the base is in memory once.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np

from outpost.runtime.errors import ModelError

ADAPTERS_DIR = "adapters"
SUFFIX = ".onnx_adapter"
MLP = {"gate_proj", "up_proj", "down_proj", "gate_up_proj"}
FUSED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}
_NODE = re.compile(r"^/model/layers\.(\d+)/(attn|mlp)/(\w+)/lora_([AB])/MatMul")
_PEFT = re.compile(r"layers\.(\d+)\.(self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")


def adapter_config(folder: Path) -> dict:
    f = folder / "adapter_config.json"
    if not f.is_file():
        raise ModelError(f"{folder} has no adapter_config.json; pass a PEFT adapter folder")
    config = json.loads(f.read_text())
    if config.get("peft_type") != "LORA":
        raise ModelError(f"{folder}: {config.get('peft_type')} adapters cannot switch at run time")
    unsupported = [
        k for k in ("use_dora", "alpha_pattern", "rank_pattern", "modules_to_save") if config.get(k)
    ]
    if unsupported:
        raise ModelError(
            f"{folder} uses {', '.join(unsupported)}, which runtime adapters do not support; "
            "merge it instead (--adapter RUN_DIR)"
        )
    return config


def template(adapters: dict[str, Path]) -> Path:
    """The adapter whose LoRA structure the base is built with: it must target every module
    any of them targets (all do, when they come from the same training recipe)."""
    targets = {name: set(adapter_config(p)["target_modules"]) for name, p in adapters.items()}
    widest = max(targets, key=lambda n: len(targets[n]))
    for name, modules in targets.items():
        if not modules <= targets[widest]:
            raise ModelError(
                f"adapter {name} targets {', '.join(sorted(modules - targets[widest]))}, which "
                f"adapter {widest} does not; runtime adapters must target the same modules"
            )
    return adapters[widest]


def lora_nodes(hf_dir: Path, adapter: Path) -> list[str]:
    """The builder's names for the LoRA MatMuls it will make: kept out of quantisation (the
    slots take float weights, and k-quant cannot quantise a rank-r matrix)."""
    layers = json.loads((hf_dir / "config.json").read_text())["num_hidden_layers"]
    projections = [p for m in adapter_config(adapter)["target_modules"] for p in FUSED.get(m, (m,))]
    return [
        f"/model/layers.{i}/{'mlp' if p in MLP else 'attn'}/{p}/lora_{ab}/MatMul"
        for i in range(layers)
        for p in projections
        for ab in "AB"
    ]


def open_slots(model_dir: Path) -> dict[str, tuple[int, int]]:
    """Rewrite the builder's LoRA MatMuls into adapter inputs; returns {input: (in, out)}."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    path = model_dir / "model.onnx"
    model = onnx.load(str(path))
    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    drop, slots = set(), {}
    for node in graph.node:
        m = _NODE.match(node.name)
        if not m:
            continue
        layer, block, proj, ab = m.groups()
        if node.op_type == "MatMulNBits":
            attrs = {a.name: a.i for a in node.attribute}
            k, n = attrs["K"], attrs["N"]
        elif node.op_type == "MatMul":
            k, n = weights[node.input[1]].dims
        else:
            raise ModelError(f"unexpected {node.op_type} node {node.name} in the LoRA path")
        drop.update(node.input[1:])
        name = f"model.layers.{layer}.{block}.{proj}.lora_{ab}.weight"
        source = node.input[0]
        del node.input[:], node.attribute[:]
        node.input.extend([source, name])
        node.op_type, node.domain = "MatMul", ""
        node.name = node.name.replace("MatMul_Q4", "MatMul").replace("MatMul_Q8", "MatMul")
        shape = [k, "lora_rank"] if ab == "A" else ["lora_rank", n]
        graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        empty = np.zeros((k, 0) if ab == "A" else (0, n), np.float32)
        graph.initializer.append(numpy_helper.from_array(empty, name))
        slots[name] = (k, n)
    if not slots:
        raise ModelError("the model builder made no LoRA nodes; this base cannot take adapters")
    kept = [i for i in graph.initializer if i.name not in drop]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for f in model_dir.glob("model.onnx*"):
        f.unlink()
    onnx.save(model, str(path), save_as_external_data=True, location="model.onnx.data")
    for f in model_dir.glob("model.onnx*"):
        os.chmod(f, 0o644)
    return slots


def peft_tensors(folder: Path, slots: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """The adapter's weights as the slots take them: A^T [in, r] and (scale * B)^T [r, out]."""
    from safetensors.numpy import load_file

    config = adapter_config(folder)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelError(f"{folder} has no adapter weights (*.safetensors)")
    r, alpha = config["r"], config["lora_alpha"]
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    out = {}
    for key, value in load_file(str(files[0])).items():
        m = _PEFT.search(key)
        if not m:
            raise ModelError(f"{folder}: cannot place adapter weight {key}")
        layer, block, proj, ab = m.groups()
        block = "attn" if block == "self_attn" else "mlp"
        parts = FUSED.get(proj, (proj,))
        names = [f"model.layers.{layer}.{block}.{p}.lora_{ab}.weight" for p in parts]
        missing = [n for n in names if n not in slots]
        if missing:
            raise ModelError(f"{folder}: the base has no adapter slot {missing[0]} for {key}")
        value = value.astype(np.float32)
        if ab == "A":
            for name in names:
                out[name] = np.ascontiguousarray(value.T)
            continue
        sizes = [slots[n][1] for n in names]
        if sum(sizes) != value.shape[0]:
            raise ModelError(f"{folder}: {key} has {value.shape[0]} rows, the base {sum(sizes)}")
        for name, rows in zip(names, np.split(value, np.cumsum(sizes)[:-1])):
            out[name] = np.ascontiguousarray((scale * rows).T)
    return out


def write_adapter(folder: Path, slots: dict[str, tuple[int, int]], path: Path) -> dict:
    """Write `folder`'s adapter as an onnxruntime adapter file; return what the manifest keeps."""
    import onnxruntime as ort

    from outpost.runtime.files import sha256_files

    config = adapter_config(folder)
    tensors = peft_tensors(folder, slots)
    adapter = ort.AdapterFormat()
    adapter.set_adapter_version(1)
    adapter.set_model_version(1)
    adapter.set_parameters({k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in tensors.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    adapter.export_adapter(str(path))
    return {
        "source": str(folder),
        "sha256": sha256_files(sorted(folder.glob("*.safetensors"))),
        "rank": int(config["r"]),
        "alpha": float(config["lora_alpha"]),
        "target_modules": sorted(config["target_modules"]),
        "parameters": int(sum(v.size for v in tensors.values())),
    }
