"""Tiny models built from config for tests: a random Phi-3 with a BPE tokenizer trained here."""

from __future__ import annotations

from pathlib import Path

PHI3_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]


def train_tokenizer(corpus: list[str], vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        bos_token="<|endoftext|>",
    )
    fast.chat_template = PHI3_TEMPLATE
    return fast


def build_tiny_phi3(
    out: Path,
    corpus: list[str],
    layers: int = 2,
    seed: int = 0,
    sizes: dict | None = None,
    dtype=None,
    device: str = "cpu",
    pad_vocab: bool = False,
) -> Path:
    """Random Phi-3 (hidden 128) with a tokenizer and Phi-3's chat template, saved to `out`.

    `sizes` overrides the config (benchmarks build a Phi-3-mini shape this way), `dtype` and
    `device` where the random weights are made; `pad_vocab` fills the tokenizer with placeholder
    tokens up to the config's vocabulary (a benchmark's GGUF needs one text per id).
    """
    import torch
    from transformers import Phi3Config, Phi3ForCausalLM

    tokenizer = train_tokenizer(corpus)
    end_id = tokenizer.convert_tokens_to_ids("<|end|>")
    eos_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Phi3Config(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=320,  # 2 x 256 would equal the vocab: the builder then takes gate_up_proj for the LM head
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        original_max_position_embeddings=2048,
        bos_token_id=eos_id,
        eos_token_id=[eos_id, end_id],
        pad_token_id=eos_id,
        tie_word_embeddings=False,
    )
    for key, value in (sizes or {}).items():
        setattr(config, key, value)
    if pad_vocab and config.vocab_size > len(tokenizer):
        tokenizer.add_tokens([f"<unused{i}>" for i in range(config.vocab_size - len(tokenizer))])
    torch.manual_seed(seed)
    with torch.device(device):
        model = Phi3ForCausalLM(config).eval()
    if dtype is not None:
        model = model.to(dtype)
    model.generation_config.eos_token_id = [eos_id, end_id]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
