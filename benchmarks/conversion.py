"""The conversion gate's numbers per precision, and what a broken conversion scores.

    .venv/bin/python benchmarks/conversion.py [--base embedded|tiny-phi3|HF_DIR] [--docs examples/docs]

For each precision / method the base is converted by the model builder and compared with the
full-precision model exactly as `outpost export` does (export/llm/gate.py: the bundle's own
passages and questions in the runtime's prompt layout, teacher forced). Then one converted
model is broken on purpose (a wrongly scaled weight: one layer's attention output and MLP down
projection x8, and, separately, one layer's weights replaced by noise) and measured again.
The bounds in export/llm/gate.py were chosen from these tables (docs/decisions.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

SETTINGS = [
    ("fp32", "default"),
    ("int8", "default"),
    ("int4", "rtn"),
    ("int4", "k_quant"),
    ("int4", "k_quant_mixed"),
]


def load(base: str, work: Path):
    from outpost.export.llm.base import EMBEDDED_LLM, resolve_base
    from outpost.export.llm.convert import load_model
    from outpost.export.llm.random_model import build_tiny_phi3

    if base == "tiny-phi3":
        corpus = [p.read_text(errors="ignore") for p in Path("examples/docs").rglob("*.md")]
        base = str(build_tiny_phi3(work / "phi3", corpus * 4))
    loaded = resolve_base(EMBEDDED_LLM if base == "embedded" else base)
    return load_model(loaded, None, lambda m: None)


def corrupt(model_dir: Path, how: str) -> None:
    """Break layer 1 of a converted model: its o_proj and down_proj weights (or int4 scales)
    scaled x8 ("scaled"), or replaced by noise of the same spread ("noise")."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_dir / "model.onnx"))
    for init in model.graph.initializer:
        name = init.name
        if "layers.1." not in name or not ("o_proj" in name or "down_proj" in name):
            continue
        if not name.endswith(("scale", "scales", "weight")):
            continue
        array = numpy_helper.to_array(init)
        if array.dtype != np.float32:
            continue
        if how == "scaled":
            array = array * 8
        else:
            array = np.random.default_rng(0).normal(0, array.std(), array.shape).astype(np.float32)
        init.CopyFrom(numpy_helper.from_array(array, name))
    for f in model_dir.glob("model.onnx*"):
        f.unlink()
    target = str(model_dir / "model.onnx")
    onnx.save(model, target, save_as_external_data=True, location="model.onnx.data")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="embedded")
    ap.add_argument("--docs", default="examples/docs")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()

    from outpost.export.config import ChunkConfig, LlmConfig
    from outpost.export.documents.chunk import chunk_documents
    from outpost.export.documents.ingest import ingest
    from outpost.export.llm import gate
    from outpost.export.llm.convert import build_onnx
    from outpost.runtime.ask.generate import Generator

    docs, _, _ = ingest([args.docs], lambda *a: None, [])
    chunks = chunk_documents(docs, ChunkConfig())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model, tokenizer, _ = load(args.base, work)
        hf = work / "hf"
        model.save_pretrained(hf)
        tokenizer.save_pretrained(hf)
        prompts = None
        for precision, algo in SETTINGS:
            out = work / f"{precision}-{algo}"
            config = LlmConfig(precision=precision, quant_algo=algo)
            build_onnx(hf, out, work / "cache", config, lambda m: None)
            variants = [("", out)]
            if (precision, algo) in (("int4", "k_quant_mixed"), ("fp32", "default")):
                for how in ("scaled", "noise"):
                    broken = work / f"{precision}-{algo}-{how}"
                    shutil.copytree(out, broken)
                    corrupt(broken, how)
                    variants.append((how, broken))
            for how, folder in variants:
                generator = Generator(folder)
                prompts = prompts or gate.samples(chunks, generator)
                report = gate.judge(gate.measure(model, tokenizer, generator, prompts), precision)
                report.pop("answers")
                rows.append({"precision": precision, "method": algo, "broken": how, **report})
                print(json.dumps(rows[-1]), flush=True)
    print()
    print("| precision | method | broken | top-1 | KL | perplexity ratio | greedy tokens | gate |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['precision']} | {r['method']} | {r['broken'] or '–'} | "
            f"{r['top1_agreement']:.3f} | {r['mean_kl']:.4f} | {r['perplexity_ratio']:.3f} | "
            f"{r['greedy_token_agreement']:.2f} | {'pass' if r['passed'] else 'FAIL'} |"
        )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
