"""Adapters switched at run time (onnxruntime-genai Multi-LoRA) and the conversion gate, on the
tiny random Phi-3 with two real PEFT LoRA adapters made here.

- An adapter used at run time answers as the same adapter merged and exported does (fp32:
  same greedy tokens, teacher-forced top-1 agreement >= 0.99).
- Concurrent runs with different adapters each get their own adapter's tokens; the server lists
  base and adapters and takes `model` per request.
- A broken conversion fails the export with one line; `--allow-degraded-model` ships it with
  the failing numbers recorded.
"""

import asyncio
import json
import threading

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import EXAMPLES, export, outpost

pytestmark = pytest.mark.slow

DOCS = EXAMPLES / "docs" / "press"
QUESTIONS = [
    "What is the maximum pressure of the press?",
    "How often must the hydraulic filter be replaced?",
    "Who may reset the light curtain?",
]


def make_adapter(base, out, seed: int):
    """A real PEFT LoRA adapter on the base, with random (non-zero) A and B so it changes the
    model's answers; the trainer's target modules for Phi-3."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    get_peft_model(model, config).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def adapters(tiny_phi3, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return {name: make_adapter(tiny_phi3, root / name, seed) for name, seed in (("a", 1), ("b", 2))}


@pytest.fixture(scope="module")
def switchable(tiny_phi3, adapters, tmp_path_factory):
    out = tmp_path_factory.mktemp("switch") / "bundle"
    args = ["--base", str(tiny_phi3), "--precision", "fp32", "--json"]
    args += [f"--adapter={name}={path}" for name, path in adapters.items()]
    done = export(DOCS, out, *args)
    assert done.returncode == 0, done.stderr[-2000:]
    return out, json.loads(done.stdout)


@pytest.fixture(scope="module")
def merged_a(tiny_phi3, adapters, tmp_path_factory):
    out = tmp_path_factory.mktemp("merged") / "bundle"
    args = ["--base", str(tiny_phi3), "--precision", "fp32", "--adapter", str(adapters["a"])]
    done = export(DOCS, out, *args)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def _generator(bundle):
    from outpost.runtime.ask.generate import Generator
    from outpost.runtime.bundle.open import open_bundle

    b = open_bundle(bundle)
    files = {name: b.file(a.file) for name, a in b.manifest.model.adapters.items()}
    return Generator(b.model_dir, threads=1, adapters=files)


def _greedy(generator, question, adapter=None, n=16):
    from outpost.runtime.ask.generate import GenerationSettings

    messages = [{"role": "user", "content": question}]
    settings = GenerationSettings(max_new_tokens=n, adapter=adapter)
    return generator.run(messages, settings).complete().token_ids


def test_manifest_lists_signed_adapter_files_with_their_gate(switchable):
    bundle, printed = switchable
    m = json.loads((bundle / "bundle.json").read_text())
    assert printed["model"]["adapters"].keys() == m["model"]["adapters"].keys() == {"a", "b"}
    for name, a in m["model"]["adapters"].items():
        assert a["file"] == f"adapters/{name}.onnx_adapter" and a["file"] in m["files"]
        assert a["rank"] == 8 and a["conversion"]["passed"] is True
        assert a["conversion"]["top1_agreement"] >= 0.99
    conversion = m["checks"]["conversion"]
    assert conversion["passed"] and conversion["top1_agreement"] >= 0.99
    assert conversion["chat_template_match"] is True
    shown = outpost("info", str(bundle))
    assert shown.returncode == 0, shown.stderr
    assert "runtime adapter (--adapter a)" in shown.stdout
    assert "conversion check passed" in shown.stdout
    info = json.loads(outpost("info", str(bundle), "--json").stdout)
    assert info["model"]["adapters"]["b"]["conversion"]["mean_kl"] < 0.01


def test_runtime_adapter_answers_as_the_merged_export(switchable, merged_a):
    switch, merged = _generator(switchable[0]), _generator(merged_a)
    for q in QUESTIONS:
        assert _greedy(switch, q, "a") == _greedy(merged, q)
    # the adapters change the model: a differs from the base and from b on some question
    assert any(_greedy(switch, q, "a") != _greedy(switch, q) for q in QUESTIONS)
    assert any(_greedy(switch, q, "a") != _greedy(switch, q, "b") for q in QUESTIONS)
    ids = switch.encode([{"role": "user", "content": " ".join(QUESTIONS)}])
    runtime, exported = switch.logits(ids, "a"), merged.logits(ids)
    assert (runtime.argmax(-1) == exported.argmax(-1)).mean() >= 0.99
    assert np.abs(runtime - exported).max() < 1e-3


def test_concurrent_runs_keep_their_own_adapter(switchable):
    generator = _generator(switchable[0])
    alone = {name: [_greedy(generator, q, name) for q in QUESTIONS] for name in ("a", "b", None)}
    together, start = {}, threading.Barrier(3)

    def run(name):
        start.wait()
        together[name] = [_greedy(generator, q, name) for q in QUESTIONS]

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b", None)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone


def test_server_lists_adapters_and_takes_model_per_request(switchable):
    from outpost.runtime.config import AskConfig, ServeConfig
    from outpost.runtime.serve.app import create_app
    from outpost.runtime.serve.releases import Releases

    config = ServeConfig(source=str(switchable[0]), ask=AskConfig(threads=1), max_concurrent=2)
    releases = Releases(config, lambda e: None)
    releases.refresh()
    assistant = releases.current.assistant
    app = create_app(config, releases, say=lambda e: None)

    def ask(model):
        body = {"messages": [{"role": "user", "content": QUESTIONS[1]}], "max_tokens": 12}
        return body if model is None else {**body, "model": model}

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://outpost") as client:
            post = lambda m: client.post("/v1/chat/completions", json=ask(m), timeout=120)  # noqa: E731
            models = await client.get("/v1/models")
            both = await asyncio.gather(post("a"), post("b"))
            unknown = await post("nope")
            plain = await post(None)
            return models, both, unknown, plain

    models, (a, b), unknown, plain = asyncio.run(run())
    ids = [m["id"] for m in models.json()["data"]]
    assert ids[1:] == ["a", "b"] and ids[0].startswith("outpost-")
    assert a.json()["model"] == "a" and b.json()["model"] == "b"
    for reply, name in ((a, "a"), (b, "b")):
        expected = assistant.ask(QUESTIONS[1], max_new_tokens=12, adapter=name)
        assert reply.json()["choices"][0]["message"]["content"] == expected.text
    assert unknown.status_code == 404 and "GET /v1/models" in unknown.json()["error"]["message"]
    assert plain.status_code == 200 and plain.json()["model"] == ids[0]


def test_serve_adapter_is_the_default_for_requests_that_name_none(switchable):
    """`serve --adapter b`: requests without `model` (the kiosk's) answer with b."""
    from outpost.runtime.config import AskConfig, ServeConfig
    from outpost.runtime.serve.releases import Releases

    config = ServeConfig(source=str(switchable[0]), ask=AskConfig(threads=1, adapter="b"))
    releases = Releases(config, lambda e: None)
    releases.refresh()
    release = releases.current
    assert release.adapter_for(None) == "b" and release.adapter_for(release.model) is None
    assert release.adapter_for("a") == "a"
    wrong = Releases(
        ServeConfig(source=str(switchable[0]), ask=AskConfig(threads=1, adapter="c")), print
    )
    wrong.refresh()
    assert wrong.current is None and "no such adapter" in wrong.error


def test_ask_with_an_unknown_adapter_is_one_line(switchable):
    done = outpost("ask", str(switchable[0]), QUESTIONS[0], "--adapter", "c")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "Error: --adapter c: this bundle has no such adapter (it has: a, b); "
        "`outpost info` lists them"
    ]


def _break_layer(model_dir):
    """A wrongly scaled weight: layer 1's attention output projection x8."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_dir / "model.onnx"))
    for init in model.graph.initializer:
        if "layers.1." in init.name and "o_proj" in init.name and init.data_type == 1:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 8, init.name))
    for f in model_dir.glob("model.onnx*"):
        f.unlink()
    target = str(model_dir / "model.onnx")
    onnx.save(model, target, save_as_external_data=True, location="model.onnx.data")


def _export_broken(tiny_phi3, out, monkeypatch, *extra):
    """`outpost export` in process, with the model builder's output broken after it is built."""
    import outpost.export.bundle as bundle
    from outpost.cli import cli

    real = bundle.build_onnx

    def build_and_break(hf_dir, out_dir, *args, **kwargs):
        done = real(hf_dir, out_dir, *args, **kwargs)
        _break_layer(out_dir)
        return done

    monkeypatch.setattr(bundle, "build_onnx", build_and_break)
    args = ["export", str(DOCS), "--out", str(out), "--base", str(tiny_phi3)]
    return CliRunner().invoke(cli, [*args, "--precision", "fp32", *extra])


def test_broken_conversion_fails_the_export_in_one_line(tiny_phi3, tmp_path, monkeypatch):
    out = tmp_path / "bundle"
    result = _export_broken(tiny_phi3, out, monkeypatch)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "next-token agreement" in errors[0], result.stderr[-1500:]
    assert "--allow-degraded-model" in errors[0]
    assert not out.exists() and not list(tmp_path.glob(".bundle*"))  # nothing half-written


def test_allow_degraded_model_ships_it_with_the_numbers(tiny_phi3, tmp_path, monkeypatch):
    out = tmp_path / "bundle"
    result = _export_broken(tiny_phi3, out, monkeypatch, "--allow-degraded-model", "--json")
    assert result.exit_code == 0, result.output[-1500:]
    conversion = json.loads(result.stdout)["checks"]["conversion"]
    assert conversion["passed"] is False and conversion["top1_agreement"] < 0.9
    assert conversion["failures"] and conversion["bound"]["min_top1"] == 0.98
    shown = outpost("info", str(out))
    assert "FAILED (shipped with --allow-degraded-model)" in shown.stdout


def test_adapter_options_are_checked_before_any_work(tiny_phi3, adapters, tmp_path):
    out = tmp_path / "bundle"
    a, b = str(adapters["a"]), str(adapters["b"])
    cases = [
        ((a, b), 2, "merges one adapter"),
        ((a, f"x={b}"), 2, "not both"),
        ((f"x={a}", f"x={b}"), 2, "each NAME once"),
        ((f"x={tmp_path}",), 1, "has no adapter_config.json"),
    ]
    for given, code, message in cases:
        args = [f"--adapter={g}" for g in given]
        done = export(DOCS, out, "--base", str(tiny_phi3), *args)
        assert done.returncode == code, (given, done.stderr)
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not out.exists()
