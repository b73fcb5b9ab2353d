"""The device's ONNX session over onnxruntime's C library (runtime/ask/onnx_session.py), checked
against onnxruntime's own Python InferenceSession: tiny graphs, then the shipped ranker and the
embedded MiniLM. Only the tests import the `onnxruntime` package; the device never does."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import ROOT
from outpost.runtime.ask.onnx_session import Session, load
from outpost.runtime.errors import ModelError

RANKER = ROOT / "models" / "ranker"
TEXTS = [
    "The relief valve opens when the pressure in the loop passes its set point.",
    "The set point of the relief valve is 12 bar, adjustable with the red screw.",
    "Replace the intake filter every 500 operating hours.",
    "E-305",
]


def _save(path: Path, nodes, inputs, outputs, initializers=()) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what onnxruntime reads whatever onnx writes by default
    onnx.save(model, str(path))
    return path


@pytest.fixture
def affine(tmp_path) -> Path:
    """y = x @ W + b, with a symbolic batch dimension."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((3, 2)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(2).astype(np.float32), "B")
    return _save(
        tmp_path / "affine.onnx",
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "B"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [w, b],
    )


@pytest.fixture
def lookup(tmp_path) -> Path:
    """int64 ids -> rows of a float table, and the ids doubled (int64): two outputs."""
    table = np.arange(40, dtype=np.float32).reshape(10, 4) / 7
    return _save(
        tmp_path / "lookup.onnx",
        [
            helper.make_node("Gather", ["table", "ids"], ["rows"]),
            helper.make_node("Add", ["ids", "ids"], ["doubled"]),
        ],
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [
            helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["batch", "seq", 4]),
            helper.make_tensor_value_info("doubled", TensorProto.INT64, ["batch", "seq"]),
        ],
        [numpy_helper.from_array(table, "table")],
    )


def _reference(path: Path, feeds: dict, threads: int = 0, inter_threads: int = 0) -> list:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = inter_threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _same(got: list, want: list) -> bool:
    return len(got) == len(want) and all(
        g.dtype == w.dtype and g.shape == w.shape and np.array_equal(g, w)
        for g, w in zip(got, want)
    )


def test_the_library_is_the_onnxruntime_packages_own():
    import onnxruntime

    api = load()
    assert api.version == onnxruntime.__version__ and api is load()
    assert api.path.parent == Path(onnxruntime.__file__).parent / "capi"


def test_a_float_graph_gives_onnxruntimes_numbers_and_its_declared_shape(affine):
    x = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    session = Session(affine)
    assert session.input_names == ["x"] and session.output_names == ["y"]
    assert session.output_dims(0) == [-1, 2]
    got = session.run({"x": x})
    assert _same(got, _reference(affine, {"x": x}))
    assert _same(session.run({"x": x[:1]}), _reference(affine, {"x": x[:1]}))  # another batch
    got[0][:] = 0  # an output is the caller's own array
    assert _same(session.run({"x": x}), _reference(affine, {"x": x}))


def test_int64_inputs_and_two_outputs(lookup):
    ids = np.array([[1, 2, 9], [0, 0, 3]], dtype=np.int64)
    session = Session(lookup, threads=1, inter_threads=1, prepack=False, log_severity=3)
    assert session.output_names == ["rows", "doubled"]
    assert [session.output_dims(i) for i in (0, 1)] == [[-1, -1, 4], [-1, -1]]
    got = session.run({"ids": ids[:, ::2]})  # not contiguous: copied for the call
    assert _same(got, _reference(lookup, {"ids": np.ascontiguousarray(ids[:, ::2])}))
    assert got[1].dtype == np.int64 and got[1].tolist() == [[2, 18], [0, 6]]


@pytest.mark.parametrize(
    "kind, dtype",
    [(TensorProto.INT32, np.int32), (TensorProto.BOOL, np.bool_), (TensorProto.UINT8, np.uint8)],
)
def test_other_element_types_pass_through(tmp_path, kind, dtype):
    path = _save(
        tmp_path / "same.onnx",
        [helper.make_node("Identity", ["a"], ["b"])],
        [helper.make_tensor_value_info("a", kind, [2, 2])],
        [helper.make_tensor_value_info("b", kind, [2, 2])],
    )
    a = np.array([[1, 0], [0, 1]], dtype=dtype)
    assert Session(path).output_dims(0) == [2, 2]
    assert _same(Session(path).run({"a": a}), [a])


def test_runs_from_several_threads_at_once_agree(affine):
    session = Session(affine, threads=1)
    batches = [np.full((4, 3), i, dtype=np.float32) for i in range(16)]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda x: session.run({"x": x})[0], batches))
    assert all(np.array_equal(t, session.run({"x": x})[0]) for t, x in zip(together, batches))


def _one_line_model_error(call) -> str:
    with pytest.raises(ModelError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and message.startswith("cannot "), message
    return message


def test_each_failure_is_one_model_error_line_naming_the_file(tmp_path, affine):
    missing = tmp_path / "missing.onnx"
    message = _one_line_model_error(lambda: Session(missing))
    assert str(missing) in message and "exist" in message
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"this is no ONNX model\n" * 8)
    message = _one_line_model_error(lambda: Session(corrupt))
    assert str(corrupt) in message and "failed" in message
    session = Session(affine)
    message = _one_line_model_error(lambda: session.run({"input": np.zeros((1, 3), np.float32)}))
    assert str(affine) in message and "no input 'input' (its inputs: x)" in message
    message = _one_line_model_error(lambda: session.run({"x": np.zeros((1, 3), np.float64)}))
    assert str(affine) in message and "tensor(double)" in message  # onnxruntime's own words
    message = _one_line_model_error(lambda: session.run({"x": np.zeros((1, 4), np.float32)}))
    assert str(affine) in message
    session.close()
    assert "closed" in _one_line_model_error(lambda: session.run({"x": np.zeros((1, 3))}))


def test_without_onnxruntime_installed_the_error_says_so(tmp_path, affine):
    """An `onnxruntime` package with no capi/ library (and which must not be imported)."""
    (tmp_path / "onnxruntime").mkdir()
    (tmp_path / "onnxruntime" / "__init__.py").write_text("raise ImportError('imported')")
    code = (
        "from outpost.runtime.ask.onnx_session import Session\n"
        "from outpost.runtime.errors import ModelError\n"
        f"try: Session({str(affine)!r})\n"
        "except ModelError as e: print(e)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-800:]
    assert done.stdout.startswith("onnxruntime is not installed"), done.stdout


class _Reference:
    """onnxruntime's InferenceSession in the place of a Session, for Embedder and Reranker."""

    def __init__(self, path: Path, threads: int, inter_threads: int = 0, prepack: bool = True):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = inter_threads
        options.log_severity_level = 3
        if not prepack:
            options.add_session_config_entry("session.disable_prepacking", "1")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(self, feeds: dict) -> list:
        return self.session.run(None, feeds)


def test_the_shipped_ranker_scores_as_onnxruntime_does():
    """Same threads as the Reranker (2 intra-op, 1 inter-op): the very same numbers."""
    from outpost.runtime.ask.rerank import Reranker, pair_text

    lines = [pair_text("Pump PX-9 > Pressure", t) for t in TEXTS] * 5  # two batches
    reranker = Reranker(RANKER, threads=2)
    got = reranker.score(TEXTS[0], lines)
    reranker.session = _Reference(RANKER / "model.onnx", threads=2, inter_threads=1)
    assert np.array_equal(got, reranker.score(TEXTS[0], lines))


@pytest.fixture(scope="module")
def minilm(tmp_path_factory) -> Path:
    """The embedded MiniLM exported to ONNX as `outpost export` does (torch, about 10 s)."""
    from outpost.export.retrieval.embedder import export_embedder

    out = tmp_path_factory.mktemp("minilm") / "embedder"
    export_embedder("embedded:all-MiniLM-L6-v2", out, TEXTS, lambda message: None)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("threads, prepack", [(0, False), (1, True), (2, False)])
def test_the_embedder_embeds_as_onnxruntime_does(minilm, threads, prepack):
    """Same options as Embedder (log severity 3, prepacking off unless asked): the very same
    vectors, batch by batch."""
    from outpost.runtime.ask.embed import Embedder

    embedder = Embedder(minilm / "model.onnx", minilm / "tokenizer.json", 256, threads, prepack)
    assert embedder.dim == 384 and embedder.session.output_dims(0) == [-1, 384]
    got = embedder.embed(TEXTS, batch_size=2)
    embedder.session = _Reference(minilm / "model.onnx", threads, prepack=prepack)
    assert np.array_equal(got, embedder.embed(TEXTS, batch_size=2))


@pytest.mark.slow
def test_the_device_never_imports_the_onnxruntime_package(minilm):
    """Search index, embedder and ranker in a fresh process, as `outpost ask` loads them: usearch
    after onnxruntime's library (the other order crashes), and no `onnxruntime` module."""
    code = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        from outpost.runtime.ask.retrieve import usearch_index
        from outpost.runtime.ask.embed import Embedder
        from outpost.runtime.ask.rerank import Reranker, pair_text
        index = usearch_index()(ndim=384)
        e = Embedder({str(minilm / "model.onnx")!r}, {str(minilm / "tokenizer.json")!r}, 256)
        vectors = e.embed({TEXTS!r})
        index.add(np.arange(len(vectors)), vectors)
        found = index.search(e.embed([{TEXTS[1]!r}])[0], 1).keys.tolist()
        r = Reranker({str(RANKER)!r}, threads=1)
        scores = r.score({TEXTS[0]!r}, [pair_text("Pump > Valve", t) for t in {TEXTS!r}])
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "onnxruntime")
        print(json.dumps([found, len(scores), loaded]))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-800:]
    assert done.stdout.strip().splitlines()[-1] == "[[1], 4, []]", done.stdout
