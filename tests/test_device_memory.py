"""The LLM's memory on the device: the embedding reads the LM head's weights in place (export,
export/llm/convert.py `embed_in_place`) and the pages onnxruntime read while loading are handed
back (runtime/ask/generate.py `page_out`). What they save is measured in docs/benchmarks.md."""

import shutil

import numpy as np
import pytest

from conftest import EXAMPLES


def _builder_form(model_dir):
    """The builder's own graph, from the bundle's: the lookup through a Reshape of the head's
    [vocab, blocks, block] weights to [vocab, hidden], its blocks along axis 1."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(model_dir / "model.onnx"), load_external_data=False)
    graph = model.graph
    gather = next(n for n in graph.node if n.op_type == "GatherBlockQuantized")
    rows = next(n for n in graph.node if gather.output[0] in n.input)
    dims = next(list(i.dims) for i in graph.initializer if i.name == gather.input[0])
    shape = numpy_helper.from_array(np.array([dims[0], dims[1] * dims[2]], np.int64), "flat")
    graph.initializer.append(shape)
    flat = helper.make_node("Reshape", [gather.input[0], "flat"], ["table"], "Flat")
    for k in range(2, len(gather.input)):  # the scales and zero points, 2-D again
        blocks = next(n for n in graph.node if gather.input[k] in n.output)
        gather.input[k] = blocks.input[0]
        graph.node.remove(blocks)
    gather.input[0] = "table"
    for a in gather.attribute:
        if a.name == "quantize_axis":
            a.i = 1
    gather.output[0] = rows.output[0]
    graph.node.remove(rows)
    graph.node.insert(list(graph.node).index(gather), flat)
    onnx.save(model, str(model_dir / "model.onnx"))


def _copy(model_dir, to):
    shutil.copytree(model_dir, to)  # onnxruntime refuses a data file linked from outside
    return to


@pytest.mark.slow
def test_the_embedding_reads_the_lm_heads_weights_in_place(smol_bundle, tmp_path):
    import onnx

    from outpost.export.llm.convert import embed_in_place
    from outpost.runtime.ask.generate import Generator

    shipped = smol_bundle / "model"
    graph = onnx.load(str(shipped / "model.onnx"), load_external_data=False).graph
    gather = next(n for n in graph.node if n.op_type == "GatherBlockQuantized")
    head = next(n for n in graph.node if n.op_type == "MatMulNBits" and "lm_head" in n.name)
    assert gather.input[0] == head.input[1]  # one table, read by both
    assert not embed_in_place(shipped)  # already so: nothing to do

    builder = _copy(shipped, tmp_path / "builder")
    _builder_form(builder)
    rewritten = _copy(builder, tmp_path / "rewritten")
    assert embed_in_place(rewritten)
    text = (EXAMPLES / "docs" / "press" / "px200-maintenance.md").read_text()[:600]
    ids = Generator(shipped).encode([{"role": "user", "content": text}])
    logits = [Generator(m, threads=2).logits(ids) for m in (builder, rewritten, shipped)]
    assert np.array_equal(logits[0], logits[1]) and np.array_equal(logits[0], logits[2])


def _resident(folder) -> int:
    """Bytes of the files in `folder` that this process maps and holds in memory (the pages it
    changed, anonymous ones, left out)."""
    import os

    inside, total, counting = os.path.realpath(folder) + os.sep, 0, False
    for line in open("/proc/self/smaps"):
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
            counting = len(fields) == 6 and fields[5].startswith(inside)
        elif counting and fields[0] == "Rss:":
            total += int(fields[1]) * 1024
        elif counting and fields[0] == "Anonymous:":
            total -= int(fields[1]) * 1024
    return total


@pytest.mark.slow
def test_the_pages_read_while_loading_are_handed_back(smol_bundle, tmp_path, monkeypatch):
    """A copy of the model of its own, so no other mapping in this process shares its pages
    (the kernel reclaims only pages that one process maps)."""
    from outpost.runtime.ask import generate

    model_dir = _copy(smol_bundle / "model", tmp_path / "model")
    data = sum(p.stat().st_size for p in model_dir.glob("*.data"))
    kept = generate.Generator(model_dir, threads=2)
    calls = []
    monkeypatch.setattr(generate, "page_out", lambda folder: calls.append(folder) or 0)
    kept.load()  # without handing back, to see what loading leaves in memory
    monkeypatch.undo()
    before = _resident(model_dir)
    assert calls == [model_dir] and before > data // 5  # the embedding table, read to load
    if generate.page_out(model_dir) == 0:
        pytest.skip("this kernel has no MADV_PAGEOUT (Linux before 5.4)")
    assert _resident(model_dir) < before // 2  # what is left: pages two mappings share
    ids = kept.encode([{"role": "user", "content": "How do I reset the KT-9 kiosk?"}])
    answer = kept.run(ids, generate.GenerationSettings(8)).complete()  # pages come back as read
    assert len(answer.token_ids) >= 1


@pytest.mark.slow
def test_a_pinned_bundles_model_is_handed_back_too(smol_bundle, monkeypatch):
    """A bundle opens through a view of links to its files (runtime/bundle/open.py), and the
    process maps the model's data file under whichever of its paths: it is found by inode."""
    from outpost.runtime.ask import generate
    from outpost.runtime.bundle.open import open_bundle

    view = open_bundle(smol_bundle).model_dir
    advised, real = [], generate.page_out
    monkeypatch.setattr(generate, "page_out", lambda folder: advised.append(real(folder)) or 0)
    generate.Generator(view, threads=2).load()
    if advised == [0] and real(smol_bundle / "model") == 0:
        pytest.skip("this kernel has no MADV_PAGEOUT (Linux before 5.4)")
    data = sum(p.stat().st_size for p in view.glob("*.data"))
    assert advised[0] >= data // 4  # the data file's mapped part: the table alone is a quarter
