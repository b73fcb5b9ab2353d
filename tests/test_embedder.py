"""The export's embedder step on the embedded MiniLM: the ONNX trace and the int8 variant."""

import numpy as np
import onnx
import pytest

from conftest import EXAMPLES


def _texts() -> list[str]:
    texts = []
    for path in sorted(EXAMPLES.rglob("*.md")):
        paragraphs = [p.strip() for p in path.read_text().split("\n\n") if len(p.split()) > 12]
        texts += paragraphs
    return texts[:60]


@pytest.mark.slow
def test_int8_embedder_is_kept_only_with_its_checks(tmp_path):
    """`--embedder-precision int8`: per-channel int8 of MiniLM on the example manuals passes
    the corpus check and is what the bundle holds; fp32 (the default) has no int8 checks. Both
    graphs are traced with eager attention (no NaN guards around the softmax)."""
    from outpost.export.retrieval.embedder import INT8_MIN_COSINE, export_embedder

    texts = _texts()
    fp32 = export_embedder("embedded:all-MiniLM-L6-v2", tmp_path / "fp32", texts, lambda m: None)
    int8 = export_embedder(
        "embedded:all-MiniLM-L6-v2", tmp_path / "int8", texts, lambda m: None, precision="int8"
    )
    assert fp32.config["variant"] == "fp32" and "self_hit_at_4_int8" not in fp32.config["checks"]
    checks = int8.config["checks"]
    assert int8.config["variant"] == "int8", checks
    assert checks["int8_vs_fp32_min_cosine"] >= INT8_MIN_COSINE
    assert checks["self_hit_at_4_int8"] >= checks["self_hit_at_4_fp32"] - 0.02
    assert sorted(p.name for p in (tmp_path / "int8").iterdir()) == ["model.onnx", "tokenizer.json"]
    size = {k: (tmp_path / k / "model.onnx").stat().st_size for k in ("fp32", "int8")}
    assert size["int8"] < 0.4 * size["fp32"]
    for kind in ("fp32", "int8"):
        ops = {n.op_type for n in onnx.load(str(tmp_path / kind / "model.onnx")).graph.node}
        assert "IsNaN" not in ops
    a, b = fp32.embedder.embed(texts), int8.embedder.embed(texts)
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-4)
    assert float((a * b).sum(1).min()) >= INT8_MIN_COSINE
