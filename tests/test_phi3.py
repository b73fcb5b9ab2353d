"""The Phi-3 path: a tiny random Phi-3 (from Phi3Config, tokenizer trained here) through
export -> onnxruntime-genai -> runtime generation."""

import json

import numpy as np
import pytest

from conftest import EXAMPLES, export, outpost

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def phi3_fp32_bundle(tiny_phi3, tmp_path_factory):
    out = tmp_path_factory.mktemp("phi3fp32") / "bundle"
    done = export(EXAMPLES / "docs" / "press", out, "--base", str(tiny_phi3), "--precision", "fp32")
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_phi3_fp32_conversion_matches_pytorch(phi3_fp32_bundle):
    m = json.loads((phi3_fp32_bundle / "bundle.json").read_text())
    assert m["model"]["type"] == "phi3"
    conversion = m["checks"]["conversion"]
    # fp32 conversion of the same weights: the next-token choices agree with PyTorch.
    assert conversion["top1_agreement"] >= 0.99 and conversion["mean_kl"] < 1e-3, conversion
    assert conversion["greedy_token_agreement"] >= 0.95
    assert conversion["chat_template_match"] is True


def test_phi3_int4_bundle_generates(tiny_bundle):
    m = json.loads((tiny_bundle / "bundle.json").read_text())
    assert m["model"]["type"] == "phi3"
    assert m["model"]["quantization"]["precision"] == "int4"
    done = outpost(
        "ask",
        str(tiny_bundle),
        "How often must the hydraulic filter be replaced?",
        "--json",
        "--max-new-tokens",
        "16",
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["timings"]["new_tokens"] > 0
    assert answer["citations"][0]["source"] == "px200-maintenance.md"


def test_refusal_gate_blocks_an_unlikely_opening(tiny_bundle):
    """The gate (runtime/ask/generate.py) on a real int4 model: whatever two tokens the model opens
    with play the refusal here. Below min_p the second may not follow the first; at 0 nothing
    changes; the probability it reports is that of the opening, in (0, 1]."""
    from outpost.runtime.ask.generate import GenerationSettings, Generator, RefusalGate
    from outpost.runtime.bundle.open import open_bundle

    gen = Generator(open_bundle(tiny_bundle).model_dir)
    messages = [{"role": "user", "content": "How often must the hydraulic filter be replaced?"}]

    def run(gate=None):
        checks = [gate.processor()] if gate else []
        result = gen.run(messages, GenerationSettings(max_new_tokens=6), checks).complete()
        return result.token_ids, result.measured.get("refusal_p")

    free, _ = run()
    assert len(free) == 6
    blocked = RefusalGate(free[0], frozenset({free[1]}), min_p=1.0)
    out, p_blocked = run(blocked)
    assert out[0] == free[0] and out[1] != free[1]
    assert 0 < p_blocked <= 1
    allowed = RefusalGate(free[0], frozenset({free[1]}), min_p=0.0)
    assert run(allowed) == (free, p_blocked)
    other = RefusalGate(free[0] + 1, frozenset({free[1]}), min_p=1.0)
    assert run(other) == (free, None)


def test_runs_in_flight_keep_their_own_results(tiny_bundle):
    """Two generations interleaved on one Generator: each result holds only its own tokens and
    measurements (what a server answering several questions at once needs)."""
    from outpost.runtime.ask.generate import GenerationSettings, Generator
    from outpost.runtime.bundle.open import open_bundle

    gen = Generator(open_bundle(tiny_bundle).model_dir)
    settings = GenerationSettings(max_new_tokens=5)
    prompts = [[{"role": "user", "content": q}] for q in ("Reset the press?", "What is E-305?")]
    alone = [gen.run(p, settings).complete() for p in prompts]
    runs = [gen.run(p, settings) for p in prompts]
    streams = [iter(r) for r in runs]
    for _ in range(10):
        for s in streams:
            next(s, None)
    for r, a in zip(runs, alone):
        r.complete()
        assert r.result.token_ids == a.token_ids and r.result.text == a.text
        assert r.result.timings.new_tokens == len(a.token_ids) and r.result.finish_reason == "end"


def test_prompt_in_pieces_gives_the_same_answer(tiny_bundle, monkeypatch):
    """The prompt goes in PREFILL_CHUNK tokens at a time (runtime/ask/generate.py): on a real int4
    model a long prompt fed in pieces gives the greedy tokens and first-step logits of one pass,
    to the bit (no pass is of one token)."""
    import outpost.runtime.ask.generate as generate
    from outpost.runtime.bundle.open import open_bundle

    gen = generate.Generator(open_bundle(tiny_bundle).model_dir)
    text = " ".join(["Replace the hydraulic filter every 500 hours or when the gauge is red."] * 6)
    ids = gen.encode([{"role": "user", "content": text}])
    assert len(ids) > 3 * 7

    class FirstLogits:
        def wants(self, new_ids):
            return not new_ids

        def __call__(self, new_ids, logits):
            self.logits = np.array(logits, copy=True)

        def measured(self):
            return {}

    def run(chunk):
        monkeypatch.setattr(generate, "PREFILL_CHUNK", chunk)
        probe = FirstLogits()
        result = gen.run(ids, generate.GenerationSettings(max_new_tokens=8), [probe]).complete()
        return result.token_ids, probe.logits

    whole, whole_logits = run(10_000)
    for chunk in (7, len(ids) - 1):  # the last piece one token: it joins the one before
        pieces, piece_logits = run(chunk)
        assert len(whole) == 8 and pieces == whole
        assert np.array_equal(whole_logits, piece_logits)  # to the bit


def test_the_model_loads_after_the_quote_and_a_last_question_lets_search_go(tiny_bundle):
    """`outpost ask` shows the quote before the LLM's weights load, and, asking nothing more,
    lets the embedder and ranker go before they load: the same answer either way."""
    from outpost.runtime.ask.assistant import open_assistant
    from outpost.runtime.config import AskConfig

    question = "How often must the hydraulic filter be replaced?"
    config = AskConfig(max_new_tokens=24)
    kept = open_assistant(tiny_bundle, config)
    assert not kept.generator.loaded  # opening reads the tokenizer, not the weights
    loaded_at_quote = []
    before = kept.ask(question, on_quote=lambda e: loaded_at_quote.append(kept.generator.loaded))
    assert loaded_at_quote == [False] and kept.generator.loaded
    last = open_assistant(tiny_bundle, config)
    after = last.ask(question, last=True)
    assert last.retriever.embedder is None and last.reranker is None
    assert after.to_dict()["answer"] == before.to_dict()["answer"]
    assert after.evidence == before.evidence and after.answer_mode == before.answer_mode
    with pytest.raises(RuntimeError, match="last question"):
        last.ask(question)
