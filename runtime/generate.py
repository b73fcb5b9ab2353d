"""Token generation with onnxruntime-genai: Config -> Model -> Tokenizer -> Generator loop.

The model folder's genai_config.json supplies defaults; only what the caller sets is overridden.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

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

    def render(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)

    def count_tokens(self, messages: list[dict]) -> int:
        return len(self.tokenizer.encode(self.render(messages)))

    def stream(
        self,
        messages: list[dict],
        settings: GenerationSettings,
        timings: Timings,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Iterator[str]:
        """Yield decoded text pieces; fill `timings` as it goes."""
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
        while not generator.is_done() and not should_stop():
            generator.generate_next_token()
            token = generator.get_next_tokens()[0]
            timings.new_tokens += 1
            if timings.new_tokens == 1:
                timings.first_token_s = time.perf_counter() - start
            timings.total_s = time.perf_counter() - start
            piece = decoder.decode(token)
            if piece:
                yield piece
