"""Token generation with onnxruntime-genai: Config -> Model -> Tokenizer -> Generator loop.

The model folder's genai_config.json supplies defaults; only what the caller sets is overridden.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Official onnxruntime-genai builds send telemetry unless this is set before import.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


@dataclass
class Timings:
    prompt_tokens: int = 0
    new_tokens: int = 0
    first_token_s: float = 0.0
    total_s: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        decode = self.total_s - self.first_token_s
        return (self.new_tokens - 1) / decode if self.new_tokens > 1 and decode > 0 else 0.0

    def as_dict(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "time_to_first_token_s": round(self.first_token_s, 4),
            "total_s": round(self.total_s, 4),
            "tokens_per_s": round(self.tokens_per_s, 2),
        }


@dataclass
class GenerationSettings:
    max_new_tokens: int = 256
    repetition_penalty: float = 1.0
    extra: dict = field(default_factory=dict)


@dataclass
class RefusalGate:
    """Decline only when the model puts at least `min_p` of its probability on declining.

    Greedy decoding takes the refusal whenever its opening token is the single most likely
    one. A fine-tuned small model spreads the probability of answering over many different
    first tokens while the refusal always opens the same way, so it declined answerable
    questions with as little as 20 % of its probability on declining. The gate measures the
    probability of the refusal's first two tokens; below `min_p` those two tokens are not
    allowed to follow each other and the model answers with its next choice.
    """

    first: int  # the refusal's first token
    second: frozenset[int]  # tokens that continue it into the refusal
    min_p: float = 0.5
    p: float | None = None  # measured on the last call: probability of declining


def _softmax_at(logits, ids) -> float:
    row = np.asarray(logits, dtype=np.float64).reshape(-1)
    e = np.exp(row - row.max())
    return float(e[list(ids)].sum() / e.sum())


class Generator:
    def __init__(self, model_dir: Path, threads: int = 0):
        os.environ["ORT_DISABLE_TELEMETRY"] = "1"
        import onnxruntime_genai as og

        self.og = og
        config = og.Config(str(model_dir))
        config.clear_providers()  # CPU
        if threads:
            overlay = {"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}
            config.overlay(json.dumps(overlay))
        self.model = og.Model(config)
        self.tokenizer = og.Tokenizer(self.model)
        genai = json.loads((model_dir / "genai_config.json").read_text())
        self.context_length = int(genai["model"]["context_length"])
        self.last_ids: list[int] = []

    def render(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)

    def refusal_gate(self, openings: Sequence[str], min_p: float) -> RefusalGate | None:
        """The gate for a refusal that opens with any of `openings` (same first token)."""
        encoded = [list(self.tokenizer.encode(o)) for o in openings]
        encoded = [e for e in encoded if len(e) >= 2 and e[0] == encoded[0][0]]
        if not encoded:
            return None  # a one-token refusal cannot be told from an answer's first word
        return RefusalGate(int(encoded[0][0]), frozenset(int(e[1]) for e in encoded), min_p)

    def count_tokens(self, messages: list[dict]) -> int:
        return len(self.tokenizer.encode(self.render(messages)))

    def stream(
        self,
        messages: list[dict],
        settings: GenerationSettings,
        timings: Timings,
        should_stop: Callable[[], bool] = lambda: False,
        gate: RefusalGate | None = None,
    ) -> Iterator[str]:
        """Yield decoded text pieces; fill `timings` as it goes (and `gate.p`, if given)."""
        og = self.og
        ids = self.tokenizer.encode(self.render(messages))
        timings.prompt_tokens = len(ids)
        params = og.GeneratorParams(self.model)
        params.set_search_options(
            max_length=min(self.context_length, len(ids) + settings.max_new_tokens),
            do_sample=False,
            repetition_penalty=settings.repetition_penalty,
            **settings.extra,
        )
        generator = og.Generator(self.model, params)
        decoder = self.tokenizer.create_stream()
        start = time.perf_counter()
        generator.append_tokens(ids)
        self.last_ids = []  # the new token ids of this call, for tests and debugging
        opening = None
        if gate is not None:
            gate.p = None
            opening = _softmax_at(generator.get_logits(), [gate.first])
        while not generator.is_done() and not should_stop():
            generator.generate_next_token()
            token = generator.get_next_tokens()[0]
            self.last_ids.append(int(token))
            if opening is not None:  # first token: does it open the refusal?
                if token == gate.first and not generator.is_done():
                    logits = generator.get_logits()
                    gate.p = opening * _softmax_at(logits, gate.second)
                    if gate.p < gate.min_p:
                        logits = np.array(logits, dtype=np.float32)
                        logits[..., list(gate.second)] = np.finfo(np.float32).min
                        generator.set_logits(logits)
                opening = None  # (another first token: the model answers; p stays None)
            timings.new_tokens += 1
            if timings.new_tokens == 1:
                timings.first_token_s = time.perf_counter() - start
            timings.total_s = time.perf_counter() - start
            piece = decoder.decode(token)
            if piece:
                yield piece
