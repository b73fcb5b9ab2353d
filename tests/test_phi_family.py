"""Phi-3.5-mini and Phi-4-mini, first-class as the tiny Phi-3 is: a random model of each, built
from its real configuration's distinguishing parameters (LongRoPE factors; partial rotary, GQA,
tied embeddings and a larger vocabulary: export/llm/random_model.py says where each comes from),
through `outpost export` at fp32 and int4 (the conversion gate's numbers in bundle.json), `ask`,
and, for long prompts, the exported fp32 model's logits against PyTorch on both sides of
LongRoPE's switch from short to long factors: read in one pass, read in pieces, and decoded
across the switch (where the runtime reads the whole sequence again, as transformers does).
"""

import json
import shutil

import numpy as np
import pytest

from conftest import EXAMPLES, Recorder, export, outpost

pytestmark = pytest.mark.slow

MODELS = ("phi35", "phi4")
PRECISIONS = ("fp32", "int4")
QUESTION = "How often must the hydraulic filter be replaced?"


@pytest.fixture(scope="session")
def phi_family(tiny_phi35, tiny_phi4) -> dict:
    return {"phi35": tiny_phi35, "phi4": tiny_phi4}


@pytest.fixture(scope="session")
def phi_bundles(phi_family, tmp_path_factory) -> dict:
    """One export per model and precision, made on first use: {(model, precision): bundle}."""
    made: dict = {}

    def get(name: str, precision: str):
        if (name, precision) not in made:
            out = tmp_path_factory.mktemp(f"{name}-{precision}") / "bundle"
            done = export(
                EXAMPLES / "docs" / "press",
                out,
                "--base",
                str(phi_family[name]),
                "--precision",
                precision,
            )
            assert done.returncode == 0, done.stderr[-2000:]
            made[name, precision] = out
        return made[name, precision]

    return get


def manifest(bundle) -> dict:
    return json.loads((bundle / "bundle.json").read_text())


@pytest.mark.parametrize("name", MODELS)
def test_fp32_export_is_the_pytorch_model(phi_bundles, name):
    m = manifest(phi_bundles(name, "fp32"))
    assert m["model"]["type"] == "phi3"
    conversion = m["checks"]["conversion"]
    assert conversion["passed"] and conversion["precision"] == "fp32", conversion
    assert conversion["top1_agreement"] >= 0.99 and conversion["mean_kl"] < 1e-4, conversion
    assert abs(conversion["perplexity_ratio"] - 1) < 1e-3, conversion
    assert conversion["greedy_token_agreement"] >= 0.95, conversion
    assert conversion["chat_template_match"] is True


@pytest.mark.parametrize("name", MODELS)
def test_int4_export_passes_the_gate(phi_bundles, name):
    m = manifest(phi_bundles(name, "int4"))
    assert m["model"]["quantization"]["precision"] == "int4"
    conversion = m["checks"]["conversion"]
    assert conversion["passed"] and conversion["precision"] == "int4", conversion
    assert conversion["chat_template_match"] is True


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", MODELS)
def test_ask_answers_from_the_bundle(phi_bundles, name, precision):
    bundle = phi_bundles(name, precision)
    done = outpost("ask", str(bundle), QUESTION, "--json", "--max-new-tokens", "16")
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert {"answer", "refused", "grounded", "citations", "timings"} <= out.keys(), out
    if out["refused"]:
        assert out["timings"]["new_tokens"] >= 0
    else:
        assert out["timings"]["new_tokens"] > 0
        assert out["citations"][0]["source"] == "px200-maintenance.md"


@pytest.fixture(scope="session")
def long_prompt_ids(phi_family) -> list[int]:
    """The press documents' text as token ids: more than enough for any length below."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(phi_family["phi35"])
    text = " ".join(p.read_text() for p in sorted((EXAMPLES / "docs" / "press").rglob("*.md")))
    return tokenizer(text).input_ids


def reference_logits(model_dir, ids: list[int]) -> np.ndarray:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("tokens", [40, 200], ids=["short", "long"])
def test_longrope_logits_match_pytorch(phi_family, phi_bundles, long_prompt_ids, name, tokens):
    """A prompt below the switch (64 tokens here, 4096 in the real models) and one three times
    past it: the exported fp32 model's teacher-forced logits are PyTorch's, the last positions
    within 1e-3 and every position's first choice the same."""
    from transformers import AutoConfig

    from outpost.runtime.ask.generate import Generator
    from outpost.runtime.bundle.open import open_bundle

    switch = AutoConfig.from_pretrained(phi_family[name]).original_max_position_embeddings
    assert (tokens > switch) == (tokens == 200)
    ids = long_prompt_ids[:tokens]
    assert len(ids) == tokens
    ref = reference_logits(phi_family[name], ids)
    got = Generator(open_bundle(phi_bundles(name, "fp32")).model_dir).logits(ids)
    assert got.shape == ref.shape
    assert np.abs(got[-8:] - ref[-8:]).max() < 1e-3
    assert (got.argmax(-1) == ref.argmax(-1)).all()


def test_phi35_long_prompt_uses_the_long_factors(phi_family, long_prompt_ids):
    """The long-prompt test above is a test of LongRoPE: past the switch PyTorch rotates every
    position with the long factors, so the first 40 positions' logits differ from the same 40
    tokens read alone (short factors)."""
    short = reference_logits(phi_family["phi35"], long_prompt_ids[:40])
    long = reference_logits(phi_family["phi35"], long_prompt_ids[:200])[:40]
    assert np.abs(short - long).max() > 1e-2


@pytest.mark.parametrize("name", MODELS)
def test_the_export_records_where_longrope_switches(phi_bundles, name):
    """The graph's switch (64 here) is in the gate's report, and beside the model for the
    runtime where crossing it changes the rotation: Phi-4-mini's short and long factors are one
    list, so its bundle has nothing to recompute."""
    bundle = phi_bundles(name, "fp32")
    conversion = manifest(bundle)["checks"]["conversion"]
    assert conversion["long_rope_switch"] == {"model": 64, "export": 64}
    facts = bundle / "model" / "outpost.json"
    if name == "phi35":
        assert json.loads(facts.read_text()) == {"long_rope_switch": 64}
    else:
        assert not facts.exists()


def test_a_model_without_longrope_has_no_switch(tiny_phi3, tiny_bundle):
    from transformers import AutoConfig

    from outpost.export.llm.convert import graph_rope_switch, long_rope_switch
    from outpost.runtime.bundle.open import open_bundle

    assert long_rope_switch(AutoConfig.from_pretrained(tiny_phi3).to_dict()) == 0
    model_dir = open_bundle(tiny_bundle).model_dir
    assert graph_rope_switch(model_dir) == 0 and not (model_dir / "outpost.json").exists()


def _export_mangled(base, out, monkeypatch, precision, mangle):
    """`outpost export` in process, the model builder given a config.json changed by `mangle`:
    what a converter that misreads the model's configuration would build."""
    from click.testing import CliRunner

    import outpost.export.bundle as bundle
    from outpost.cli import cli

    real = bundle.build_onnx

    def build_mangled(hf_dir, out_dir, *args, **kwargs):
        read = hf_dir.with_name("as-read")  # the export keeps the model it gates against
        shutil.copytree(hf_dir, read)
        config = json.loads((read / "config.json").read_text())
        mangle(config)
        (read / "config.json").write_text(json.dumps(config))
        return real(read, out_dir, *args, **kwargs)

    monkeypatch.setattr(bundle, "build_onnx", build_mangled)
    args = ["export", str(EXAMPLES / "docs" / "press"), "--out", str(out), "--base", str(base)]
    return CliRunner().invoke(cli, [*args, "--precision", precision])


def as_plain_rope(config):
    """Read as Phi-3-mini-4k: the builder then makes plain RoPE, with no switch."""
    config["original_max_position_embeddings"] = config["max_position_embeddings"]
    rope = config.pop("rope_parameters")
    config["rope_parameters"] = {"rope_type": "default", "rope_theta": rope["rope_theta"]}


def untied(config):
    """Tied embeddings lost: the LM head the builder loads is a fresh random matrix."""
    config["tie_word_embeddings"] = False


@pytest.mark.parametrize(
    "name, precision, mangle, failure",
    [
        ("phi35", "fp32", as_plain_rope, "next-token agreement"),
        ("phi35", "int4", as_plain_rope, "LongRoPE switches to its long factors not at all"),
        ("phi4", "int4", untied, "next-token agreement"),
    ],
    ids=["phi35-plain-rope-fp32", "phi35-plain-rope-int4", "phi4-untied-int4"],
)
def test_a_conversion_that_loses_the_mechanism_fails_the_gate(
    phi_family, tmp_path, monkeypatch, name, precision, mangle, failure
):
    """Measured: plain RoPE for the tiny Phi-3.5 agrees 94 % at fp32 (the bound is 98 %) and
    80 % at int4, where a right int4 export agrees 81 %: only the graph's switch tells there.
    Untied, the tiny Phi-4 agrees 0-1 % (the LM head is drawn at random each time)."""
    out = tmp_path / "bundle"
    result = _export_mangled(phi_family[name], out, monkeypatch, precision, mangle)
    assert result.exit_code == 1, result.output[-1500:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and failure in errors[0], result.stderr[-1500:]
    assert not out.exists()


@pytest.mark.parametrize("name", MODELS)
def test_decoding_across_the_switch_matches_pytorch(
    phi_family, phi_bundles, long_prompt_ids, name, monkeypatch
):
    """A 56-token prompt and 24 greedy tokens: the sequence crosses the switch (64) while
    decoding. At every step the logits the runtime chooses from are PyTorch's generation's:
    the short factors up to 64 tokens, then (transformers recomputes its cache there) one pass
    over the whole text with the long ones. Speculative decoding is held to the same, with drafts
    that are the answer's own next tokens, so passes of 5 tokens run up to and past the switch.
    (Phi-4-mini's factor lists are one list: it needs no recompute and must match all the same.)"""
    from outpost.runtime.ask import speculative
    from outpost.runtime.ask.generate import GenerationSettings, Generator
    from outpost.runtime.bundle.open import open_bundle

    prompt, switch, new = 56, 64, 24
    gen = Generator(open_bundle(phi_bundles(name, "fp32")).model_dir)
    assert gen.long_rope_switch == (switch if name == "phi35" else 0)
    seen = Recorder()
    settings = GenerationSettings(new, extra={"min_length": prompt + new})
    run = gen.run(long_prompt_ids[:prompt], settings, [seen]).complete()
    sequence = long_prompt_ids[:prompt] + run.token_ids
    short = reference_logits(phi_family[name], sequence[:switch])
    long = reference_logits(phi_family[name], sequence[: prompt + new - 1])

    def assert_pytorch(rows):
        assert len(rows) == new
        for step, row in enumerate(rows):
            total = prompt + step  # tokens read when this step's logits were computed
            ref = short if total <= switch else long
            assert np.abs(row - ref[total - 1]).max() < 1e-3, step

    assert_pytorch(seen.rows)
    monkeypatch.setattr(
        speculative.Lookup,
        "draft",
        lambda self, most: sequence[len(self.tokens) :][: max(most, 0)],  # as Lookup.draft: none
    )
    drafted, seen = GenerationSettings(new, draft_tokens=4, extra=settings.extra), Recorder()
    fast = gen.run(long_prompt_ids[:prompt], drafted, [seen]).complete()
    assert fast.token_ids == run.token_ids and fast.timings.accepted >= new // 2
    assert_pytorch(seen.rows)


def test_a_long_prompt_in_pieces_is_read_as_one_pass(
    phi_family, phi_bundles, long_prompt_ids, monkeypatch
):
    """A prompt past the switch fed in pieces smaller than the switch (as Phi-3.5-mini's 4096
    is to the 64-token pieces) gets the logits of one pass over it: its first piece crosses."""
    from outpost.runtime.ask import generate
    from outpost.runtime.bundle.open import open_bundle

    monkeypatch.setattr(generate, "PREFILL_CHUNK", 16)
    gen = generate.Generator(open_bundle(phi_bundles("phi35", "fp32")).model_dir)
    ids = long_prompt_ids[:100]
    seen = Recorder()
    gen.run(ids, generate.GenerationSettings(1), [seen]).complete()
    ref = reference_logits(phi_family["phi35"], ids)[-1]
    assert np.abs(seen.rows[0] - ref).max() < 1e-3


@pytest.mark.parametrize("precision", PRECISIONS)
def test_phi4_keeps_one_embedding_matrix(phi_bundles, precision):
    """Tied embeddings stay tied without builder options (its shared_embeddings follows
    tie_word_embeddings): the token embedding is gathered from the LM head's weight, the only
    initializer of vocabulary size (int4 with k_quant_mixed: that weight in int8 blocks, read
    in place)."""
    import onnx

    from outpost.runtime.bundle.open import open_bundle

    model_dir = open_bundle(phi_bundles("phi4", precision)).model_dir
    graph = onnx.load(str(model_dir / "model.onnx"), load_external_data=False).graph
    weights = {i.name for i in graph.initializer if 2048 in i.dims and len(i.dims) >= 2}
    assert len([w for w in weights if not w.endswith(("_scale", "_zp"))]) == 1, weights
    gather = next(n for n in graph.node if n.name.startswith("/model/embed_tokens/Gather"))
    source = gather.input[0]
    if precision == "int4":  # read in place, no Reshape between (convert.py `embed_in_place`)
        assert gather.op_type == "GatherBlockQuantized" and source in weights
    else:
        source = next(n for n in graph.node if source in n.output).input[0]
    assert source in weights and source.startswith("lm_head.")
