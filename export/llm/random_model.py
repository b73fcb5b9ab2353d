"""Tiny models built from config for tests: random Phi-3, Phi-3.5-mini and Phi-4-mini, each with
a BPE tokenizer trained here.

All three are `Phi3ForCausalLM` (as the real ones are), 2 layers at hidden 128 (192 for
Phi-4-mini, see `tiny_phi4_sizes`). What tells them apart is taken from the real models'
config.json files and written down below as constants; those files cannot be downloaded here,
so the numbers are as published for microsoft/Phi-3.5-mini-instruct and
microsoft/Phi-4-mini-instruct, written from memory, not re-read (the factor lists to two or
three decimals):

- Phi-3.5-mini: LongRoPE (`rope_scaling` of type "longrope" with 48 short and 48 long factors,
  head_dim 96 / 2), original_max_position_embeddings 4096, max_position_embeddings 131072 (32x),
  vocabulary 32064, untied embeddings, 32 heads and 32 key/value heads.
- Phi-4-mini: the same LongRoPE mechanism (4096 -> 131072), partial_rotary_factor 0.75 (96 of
  head_dim 128 rotated, so 48 factors), tied input/output embeddings, a 200064-token vocabulary,
  24 attention heads sharing 8 key/value heads (GQA), and a chat template without newlines.

The tiny ones keep each mechanism and scale the lengths down by the same ratio: the switch from
short to long factors comes at 64 tokens (not 4096), and the maximum is 32x that, as in the real
ones, so LongRoPE's attention factor (from max / original) is the real one's. The factor lists
are the real lists taken at even steps down to the tiny shape's rotated half-dimension.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PHI3_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)
# Phi-4-mini-instruct's template without its tool branch: no newline after a role or <|end|>.
PHI4_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

# The tiny Phi-3 of the tests (no scaling: the short range is the whole context).
PHI3_TINY = dict(
    hidden_size=128,
    intermediate_size=320,  # 2 x 256 would equal the vocab: the builder then takes gate_up_proj for the LM head
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=2048,
    original_max_position_embeddings=2048,
    tie_word_embeddings=False,
)

# microsoft/Phi-3.5-mini-instruct, config.json "rope_scaling" (48 = head_dim 96 / 2 each): short
# factors stay near 1 (the pre-trained 4k range), long ones grow towards 64 for the 128k range.
PHI35_MINI_SHORT_FACTOR = [
    1.0, 1.02, 1.03, 1.03, 1.05, 1.05, 1.05, 1.05, 1.05, 1.07, 1.1, 1.11,
    1.16, 1.16, 1.17, 1.29, 1.34, 1.68, 1.79, 1.82, 1.85, 1.88, 1.91, 1.94,
    1.99, 2.02, 2.02, 2.02, 2.03, 2.03, 2.03, 2.03, 2.03, 2.03, 2.03, 2.03,
    2.03, 2.04, 2.06, 2.08, 2.09, 2.19, 2.22, 2.59, 2.73, 2.75, 2.84, 2.84,
]  # fmt: skip
PHI35_MINI_LONG_FACTOR = [
    1.08, 1.11, 1.14, 1.34, 1.59, 1.6, 1.62, 2.62, 3.23, 3.23, 4.79, 7.4,
    7.7, 9.09, 12.2, 17.67, 24.46, 28.57, 30.42, 30.84, 32.59, 32.93, 42.32, 44.96,
    50.34, 50.45, 57.55, 57.93, 58.21, 60.14, 62.61, 62.62, 62.71, 63.14, 63.14, 63.77,
    63.93, 63.96, 63.97, 64.03, 64.07, 64.08, 64.12, 64.41, 64.48, 64.51, 64.53, 64.84,
]  # fmt: skip
PHI35_MINI = dict(
    vocab_size=32064,
    hidden_size=3072,
    intermediate_size=8192,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    max_position_embeddings=131072,
    original_max_position_embeddings=4096,
    tie_word_embeddings=False,
)
# microsoft/Phi-4-mini-instruct, config.json: both factor lists (48 = 128 x 0.75 / 2) are the
# same list there, rising geometrically (x1.118) to 32 and then flat to ~48.
PHI4_MINI_ROPE_FACTOR = [
    1.0, 1.118, 1.251, 1.399, 1.564, 1.749, 1.956, 2.188, 2.446, 2.736, 3.06, 3.422,
    3.826, 4.279, 4.786, 5.352, 5.985, 6.693, 7.485, 8.371, 9.361, 10.469, 11.707, 13.093,
    14.642, 16.374, 18.312, 20.478, 22.901, 25.611, 28.641, 32.03, 32.1, 32.13, 32.23, 32.6,
    32.61, 32.64, 32.66, 32.7, 32.71, 32.93, 32.97, 33.28, 33.49, 33.5, 44.16, 47.77,
]  # fmt: skip
PHI4_MINI = dict(
    vocab_size=200064,
    hidden_size=3072,
    intermediate_size=8192,
    num_hidden_layers=32,
    num_attention_heads=24,
    num_key_value_heads=8,
    partial_rotary_factor=0.75,
    max_position_embeddings=131072,
    original_max_position_embeddings=4096,
    tie_word_embeddings=True,
)
# microsoft/Phi-3-mini-4k-instruct: Phi-3.5-mini's sizes without scaling (4k is its whole range).
PHI3_MINI = {**PHI35_MINI, "max_position_embeddings": 4096}
TINY_ORIGINAL_CONTEXT = 64  # where a tiny LongRoPE model switches from short to long factors
TINY_PHI4_VOCAB = 2048  # the trained tokenizer padded with placeholders: tied embeddings matter


def every_nth(factors: list[float], n: int) -> list[float]:
    """`n` entries of `factors` at even steps from the first: a real factor list shrunk to a
    tiny head's rotary half-dimension, keeping its shape (low frequencies last)."""
    step = len(factors) / n
    return [factors[int(i * step)] for i in range(n)]


def longrope(short: list[float], long: list[float], rotary_dims: int) -> dict:
    half = rotary_dims // 2
    return {
        "type": "longrope",
        "short_factor": every_nth(short, half),
        "long_factor": every_nth(long, half),
    }


def tiny_phi35_sizes() -> dict:
    """Phi-3.5-mini's mechanism at hidden 128 (head_dim 32, 16 factors per list)."""
    ratio = PHI35_MINI["max_position_embeddings"] // PHI35_MINI["original_max_position_embeddings"]
    return {
        **PHI3_TINY,
        "num_key_value_heads": 4,  # as many as the attention heads, as in the real one
        "original_max_position_embeddings": TINY_ORIGINAL_CONTEXT,
        "max_position_embeddings": TINY_ORIGINAL_CONTEXT * ratio,
        "rope_scaling": longrope(PHI35_MINI_SHORT_FACTOR, PHI35_MINI_LONG_FACTOR, 128 // 4),
    }


def tiny_phi4_sizes() -> dict:
    """Phi-4-mini's mechanisms in miniature: 3 heads of 64 sharing 1 key/value head (the real
    one's 3:1), 48 of each head's 64 dimensions rotated (24 factors per list), tied embeddings
    over a 2048-token vocabulary.

    Hidden 192, not 128: at head_dim 32 the rotated half is 12, and onnxruntime's
    GroupQueryAttention refuses it ("cos_cache dimension 1 must be <= head_size / 2 and a
    multiple of 8"); the real one's is 48.
    """
    factor = PHI4_MINI["partial_rotary_factor"]
    ratio = PHI4_MINI["max_position_embeddings"] // PHI4_MINI["original_max_position_embeddings"]
    return {
        **PHI3_TINY,
        "vocab_size": TINY_PHI4_VOCAB,
        "hidden_size": 192,
        "num_attention_heads": 3,
        "num_key_value_heads": 1,
        "partial_rotary_factor": factor,
        "original_max_position_embeddings": TINY_ORIGINAL_CONTEXT,
        "max_position_embeddings": TINY_ORIGINAL_CONTEXT * ratio,
        "rope_scaling": longrope(PHI4_MINI_ROPE_FACTOR, PHI4_MINI_ROPE_FACTOR, int(64 * factor)),
        "tie_word_embeddings": True,
    }


def train_tokenizer(corpus: list[str], vocab_size: int = 512, template: str = PHI3_TEMPLATE):
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
    fast.chat_template = template
    return fast


def build_tiny_phi(
    out: Path,
    corpus: list[str],
    shape: dict,
    layers: int = 2,
    seed: int = 0,
    sizes: dict | None = None,
    dtype=None,
    device: str = "cpu",
    pad_vocab: bool = False,
    template: str = PHI3_TEMPLATE,
) -> Path:
    """A random `Phi3ForCausalLM` of `shape` (Phi3Config arguments; `vocab_size` defaults to the
    trained tokenizer's) with a tokenizer and `template`, saved to `out`.

    `sizes` overrides the config afterwards (benchmarks build a Phi-3-mini shape this way),
    `dtype` and `device` where the random weights are made; `pad_vocab` fills the tokenizer with
    placeholder tokens up to the config's vocabulary (one text per id).
    """
    import torch
    from transformers import Phi3Config, Phi3ForCausalLM

    tokenizer = train_tokenizer(corpus, template=template)
    end_id = tokenizer.convert_tokens_to_ids("<|end|>")
    eos_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Phi3Config(
        **{"vocab_size": len(tokenizer), **shape},
        num_hidden_layers=layers,
        bos_token_id=eos_id,
        eos_token_id=[eos_id, end_id],
        pad_token_id=eos_id,
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
    return build_tiny_phi(out, corpus, PHI3_TINY, layers, seed, sizes, dtype, device, pad_vocab)


def build_tiny_phi35(out: Path, corpus: list[str], layers: int = 2, seed: int = 0) -> Path:
    """Random Phi-3.5-mini in miniature (LongRoPE switching at 64 tokens), saved to `out`."""
    return build_tiny_phi(out, corpus, tiny_phi35_sizes(), layers, seed)


def build_tiny_phi4(out: Path, corpus: list[str], layers: int = 2, seed: int = 0) -> Path:
    """Random Phi-4-mini in miniature (partial rotary, GQA, tied embeddings, 2048 tokens with
    placeholders, its chat template), saved to `out`."""
    return build_tiny_phi(
        out, corpus, tiny_phi4_sizes(), layers, seed, pad_vocab=True, template=PHI4_TEMPLATE
    )


def real_shape(name: str) -> tuple[dict, int, str]:
    """(Phi3Config arguments, layers, chat template) of a real model's shape, for benchmarks
    with random weights: "phi3-mini", "phi35-mini" (LongRoPE, 48 factors per list) or
    "phi4-mini" (partial rotary, GQA, tied embeddings, 200064 tokens)."""
    shapes: dict[str, dict[str, Any]] = {
        "phi3-mini": PHI3_MINI,
        "phi35-mini": PHI35_MINI,
        "phi4-mini": PHI4_MINI,
    }
    if name not in shapes:
        raise ValueError(f"unknown shape {name!r}; choose one of {', '.join(shapes)}")
    shape = dict(shapes[name])
    layers = shape.pop("num_hidden_layers")
    head_dim = shape["hidden_size"] // shape["num_attention_heads"]
    if name == "phi35-mini":
        shape["rope_scaling"] = longrope(PHI35_MINI_SHORT_FACTOR, PHI35_MINI_LONG_FACTOR, head_dim)
    if name == "phi4-mini":
        rotary = int(head_dim * PHI4_MINI["partial_rotary_factor"])
        shape["rope_scaling"] = longrope(PHI4_MINI_ROPE_FACTOR, PHI4_MINI_ROPE_FACTOR, rotary)
    return shape, layers, PHI4_TEMPLATE if name == "phi4-mini" else PHI3_TEMPLATE


def build_real_shape(
    out: Path,
    corpus: list[str],
    name: str,
    dtype=None,
    device: str = "cpu",
    layers: int | None = None,
) -> Path:
    """A random model of a real one's shape (`real_shape`), its tokenizer padded with
    placeholders to the real vocabulary, saved to `out`. With `dtype` the weights are made in
    that type (bf16: 7.7 GB for the 3.8B shapes, where fp32 would need 15 GB); `layers` fewer
    than the real count make a quick smoke model."""
    import torch

    shape, real_layers, template = real_shape(name)
    layers = layers or real_layers
    default = torch.get_default_dtype()
    if dtype is not None:
        torch.set_default_dtype(dtype)
    try:
        return build_tiny_phi(
            out, corpus, shape, layers, device=device, pad_vocab=True, template=template
        )
    finally:
        torch.set_default_dtype(default)
