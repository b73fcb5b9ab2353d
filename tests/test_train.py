"""The trainer on CPU with a tiny random Phi-3: loss falls, the adapter reloads in plain peft,
merges with matching logits, resumes on the same curve, and exports into a bundle."""

import json
import shutil

import pytest

from conftest import EXAMPLES, outpost, train_args

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tiny_phi3, chat_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    done = outpost(*train_args(tiny_phi3, chat_file, out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "training LORA on cpu" in done.stderr
    assert "general replay: " in done.stderr and " of 2 base-model answers kept" in done.stderr
    assert f"--adapter {out}\n" in done.stdout and f"--adapter run={out}\n" in done.stdout
    return out


def test_loss_falls_and_outputs_are_written(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    losses = [r["loss"] for r in metrics["train"]]
    assert len(losses) == 16
    # measured: 5.55 -> 4.49 (mean of the first and last four steps)
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.5, losses
    assert metrics["eval"][-1]["loss"] < metrics["eval"][0]["loss"]
    assert all(r["tokens_per_s"] > 0 and r["peak_memory_gib"] > 0 for r in metrics["train"])
    for name in ("adapter_config.json", "adapter_model.safetensors", "recipe.json", "loss.png"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "checkpoints" / "step-000008" / "state.pt").is_file()
    recipe = json.loads((run_dir / "recipe.json").read_text())
    assert recipe["method_used"] == "lora" and recipe["max_steps"] == 16


def test_adapter_reloads_in_plain_peft_and_merges_with_matching_logits(run_dir, tiny_phi3):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config = json.loads((run_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_phi3)
    assert set(config["target_modules"]) == {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}
    base = AutoModelForCausalLM.from_pretrained(tiny_phi3)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        plain = base(ids).logits
        model = PeftModel.from_pretrained(base, str(run_dir)).eval()
        adapted = model(ids).logits
        merged = model.merge_and_unload()(ids).logits
    assert (adapted - plain).abs().max() > 1e-3  # the adapter changed the model
    assert (adapted - merged).abs().max() < 1e-4


def test_resume_continues_the_same_curve(run_dir, tiny_phi3, chat_file, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    done = outpost(*train_args(tiny_phi3, chat_file, copy, "--resume"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming at step 8 of 16" in done.stderr
    before = [r["loss"] for r in json.loads((run_dir / "metrics.json").read_text())["train"]]
    after = [r["loss"] for r in json.loads((copy / "metrics.json").read_text())["train"]]
    assert after == pytest.approx(before, abs=1e-4)


def test_export_merges_the_run_and_finds_its_base(run_dir, tmp_path):
    out = tmp_path / "bundle"
    done = outpost(
        "export",
        str(EXAMPLES / "docs" / "press"),
        "--out",
        str(out),
        "--adapter",
        str(run_dir),
        "--precision",
        "fp32",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    m = json.loads((out / "bundle.json").read_text())
    assert m["model"]["adapter"]["merge_max_logit_diff"] < 1e-4
    assert len(m["model"]["adapter"]["sha256"]) == 64
    assert m["checks"]["conversion"]["passed"] is True


def test_output_folder_with_a_different_run_is_refused(run_dir, tiny_phi3, chat_file):
    done = outpost(*train_args(tiny_phi3, chat_file, run_dir, "--rank", "4"))
    assert done.returncode == 1 and "holds a different run (rank differ)" in done.stderr
    done = outpost(*train_args(tiny_phi3, chat_file, run_dir))
    assert done.returncode == 1 and "pass --resume" in done.stderr


def test_feedback_from_the_field_is_trained_on(tiny_phi3, chat_file, tmp_path):
    from test_feedback_train import row

    from outpost.runtime.field import exchange

    exchange.write(
        [row(1, True), row(2, True, mode="declined"), row(3, False)], tmp_path / "f.jsonl"
    )
    quick = ("--general", "0", "--max-steps", "2")  # the last of a repeated option wins
    feedback = ("--feedback", str(tmp_path / "f.jsonl"))
    done = outpost(*train_args(tiny_phi3, chat_file, tmp_path / "run", *feedback, *quick))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "feedback: 2 examples from 3 answers" in done.stderr
    broken = tmp_path / "cut.jsonl"
    broken.write_text((tmp_path / "f.jsonl").read_text()[:-40])
    done = outpost(*train_args(tiny_phi3, chat_file, tmp_path / "run2", "--feedback", str(broken)))
    assert done.returncode == 1 and "checksum does not match" in done.stderr


def test_qlora_without_cuda_is_a_clear_error(tiny_phi3, chat_file, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = outpost(*train_args(tiny_phi3, chat_file, tmp_path / "q", "--method", "qlora"))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: --method qlora needs a CUDA GPU (bitsandbytes 4-bit); use --method lora on CPU"
    )
    assert not (tmp_path / "q").exists()


def test_bad_training_input_fails_before_training(tiny_phi3, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n{oops\n'
    )
    done = outpost(*train_args(tiny_phi3, bad, tmp_path / "r"))
    assert done.returncode == 1 and f"Error: {bad}:2: not valid JSON" in done.stderr
    assert "step 1" not in done.stderr and not (tmp_path / "r").exists()
    done = outpost(*train_args("no-such-model", bad, tmp_path / "r"))
    assert done.returncode == 1 and "unknown base model 'no-such-model'" in done.stderr


@pytest.mark.gpu
def test_qlora_on_cuda(tiny_phi3, chat_file, tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    pytest.importorskip("bitsandbytes")
    done = outpost(*train_args(tiny_phi3, chat_file, tmp_path / "q", "--method", "qlora"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "q" / "recipe.json").read_text())["method_used"] == "qlora"


def test_general_replay_keeps_the_base_models_own_answers():
    """Self-distillation: the embedded model's greedy answers, finished ones only, as chat data."""
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from outpost.export.llm.base import EMBEDDED_LLM, resolve_base
    from outpost.trainer.general import self_distill

    base = resolve_base(EMBEDDED_LLM)
    tokenizer = AutoTokenizer.from_pretrained(base.location, gguf_file=base.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(
        base.location, gguf_file=base.gguf_file, dtype=torch.float32
    )
    side, said = tokenizer.padding_side, []
    replay = self_distill(model, tokenizer, 3, 48, said.append)
    assert said == [f"general replay: {len(replay)} of 3 base-model answers kept"]
    assert replay and all([m["role"] for m in c] == ["user", "assistant"] for c in replay)
    first = {c[0]["content"]: c[1]["content"] for c in replay}
    assert "Paris" in first["What is the capital of France?"]
    assert tokenizer.padding_side == side  # generation pads left; the trainer pads right
