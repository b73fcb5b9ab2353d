"""Token generation with onnxruntime-genai: Config -> Model -> Tokenizer -> Generator loop.

The model folder's genai_config.json supplies defaults; only what the caller sets is overridden.
Every caller that decodes (ask, chat, eval, the server, the export's conversion gate for its
greedy answers, benchmarks) goes through `Generator.run`, which returns a per-call `Run`: iterate
it for text pieces, read `run.result` for the token ids, timings, what the logits processors
measured and why it finished. Nothing about one call is stored on the Generator, so several
calls can be in flight. The gate's teacher-forced comparison (export/llm/gate.py) decodes nothing:
it reads every position's logits with `Generator.logits`.

A logits processor looks at (and may change) the next-token logits before a token is chosen:
`wants(new_ids)` says whether it needs the logits at this step (reading them costs a copy of
the vocabulary row, so processors ask only when they act), `__call__(new_ids, logits)` returns
changed logits or None, and `measured()` returns what it found for the result.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np

# The prompt goes in this many tokens at a time. The graph computes logits for every token it is
# fed (tokens x vocabulary x 4 bytes: 106 MB for a 540-token prompt with SmolLM2's 49k words);
# in pieces of 64 the prefill peak falls by ~130 MB against one piece and by ~25 MB against
# pieces of 128, for 2-4 % on the first token; pieces of 32 cost 20 % (docs/benchmarks.md,
# "Memory"). The logits are the same to the bit in pieces of any size of two tokens or more.
PREFILL_CHUNK = 64

# Beside genai_config.json (which refuses keys it does not know), written by the export:
# {"long_rope_switch": N} for a LongRoPE model (original_max_position_embeddings).
MODEL_FACTS = "outpost.json"

MADV_PAGEOUT = 21  # <linux/mman.h>: reclaim these pages now

# Official onnxruntime-genai builds send telemetry unless this is set before import.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def available_cores() -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup CPU quota."""
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def page_out(folder: Path) -> int:
    """Hand back the pages this process maps from files in `folder` (Linux's MADV_PAGEOUT);
    returns the bytes advised, 0 where the kernel has no such advice.

    onnxruntime maps the model's data file and reads every weight once as it loads, to pre-pack
    it into its compute layout; the pages read stay counted in the process's memory (28 MB for
    SmolLM2's embedding table, used a row per token). The advice lets the kernel reclaim them
    now rather than under pressure; a page read later comes back from the file. Data is never
    lost: a page the process changed is written to swap or kept."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        with open("/proc/self/maps") as f:
            maps = f.read().splitlines()
        # By inode: a bundle's pinned view links its files, and maps names a linked file by
        # whichever of its paths the kernel has at hand. Not by device too: on btrfs and
        # overlayfs maps and stat() name different devices. A mapping of another file with the
        # same inode number only gets advice it does not need.
        inodes = {str(p.stat().st_ino) for p in Path(folder).iterdir() if p.is_file()}
    except OSError:
        return 0
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    advised = 0
    for line in maps:
        fields = line.split(maxsplit=5)
        if len(fields) >= 6 and fields[4] in inodes:  # a file's mapping (inode 0: anonymous)
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if madvise(start, end - start, MADV_PAGEOUT) != 0:
                return advised  # an older kernel (before 5.4): nothing to gain from the rest
            advised += end - start
    return advised


@dataclass
class Timings:
    prompt_tokens: int = 0
    new_tokens: int = 0
    first_token_s: float = 0.0
    total_s: float = 0.0
    drafted: int = 0  # tokens guessed by the prompt lookup (speculative decoding)
    accepted: int = 0  # of them, those the model chose itself

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
            **({"drafted": self.drafted, "accepted": self.accepted} if self.drafted else {}),
        }


@dataclass
class GenerationSettings:
    max_new_tokens: int = 256
    repetition_penalty: float = 1.0
    adapter: str | None = None  # one of the Generator's adapters, active for this run only
    draft_tokens: int = 0  # speculative decoding: up to this many tokens copied from the prompt
    extra: dict = field(default_factory=dict)


@dataclass
class Generation:
    """What one call produced."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    measured: dict = field(default_factory=dict)  # from the logits processors
    finish_reason: str | None = None  # "end" (end of text or length), "stopped" (caller)


class LogitsProcessor(Protocol):
    def wants(self, new_ids: list[int]) -> bool: ...

    def __call__(self, new_ids: list[int], logits: np.ndarray) -> np.ndarray | None: ...

    def measured(self) -> dict: ...


def probability(logits: np.ndarray, ids: Iterable[int]) -> float:
    """Softmax probability mass of `ids` in a logits row."""
    row = np.asarray(logits, dtype=np.float64).reshape(-1)
    e = np.exp(row - row.max())
    return float(e[list(ids)].sum() / e.sum())


@dataclass(frozen=True)
class RefusalGate:
    """Decline only when the model puts at least `min_p` of its probability on declining.

    Greedy decoding takes the refusal whenever its opening token is the single most likely
    one. A fine-tuned small model spreads the probability of answering over many different
    first tokens while the refusal always opens the same way, so it declined answerable
    questions with as little as 20 % of its probability on declining. The gate measures the
    probability of the refusal's first two tokens; below `min_p` those two tokens are not
    allowed to follow each other and the model answers with its next choice.

    The gate is the setting; `processor()` makes the per-call logits processor.
    """

    first: int  # the refusal's first token
    second: frozenset[int]  # tokens that continue it into the refusal
    min_p: float = 0.5

    def processor(self) -> RefusalCheck:
        return RefusalCheck(self)


@dataclass
class RefusalCheck:
    gate: RefusalGate
    opening: float | None = None  # probability of the refusal's first token
    p: float | None = None  # probability of declining; None when the answer opened otherwise

    def wants(self, new_ids: list[int]) -> bool:
        return not new_ids or (len(new_ids) == 1 and new_ids[0] == self.gate.first)

    def __call__(self, new_ids: list[int], logits: np.ndarray) -> np.ndarray | None:
        if not new_ids:
            self.opening = probability(logits, [self.gate.first])
            return None
        assert self.opening is not None  # measured at the first step (`wants` asked for it)
        self.p = self.opening * probability(logits, self.gate.second)
        if self.p >= self.gate.min_p:
            return None
        blocked = np.array(logits, dtype=np.float32)
        blocked[..., list(self.gate.second)] = np.finfo(np.float32).min
        return blocked

    def measured(self) -> dict:
        return {"refusal_p": self.p}


class Run:
    """One generation in progress: iterate for text pieces; `result` fills as it goes."""

    def __init__(
        self,
        owner: Generator,
        ids: list[int],
        settings: GenerationSettings,
        processors: Sequence[LogitsProcessor],
        should_stop: Callable[[], bool],
    ):
        self.owner, self.ids, self.settings = owner, ids, settings
        self.processors, self.should_stop = list(processors), should_stop
        self.result = Generation()
        self._pieces: Iterator[str] | None = None
        self._long = False  # the cache is rotated with LongRoPE's long factors

    def __iter__(self) -> Iterator[str]:
        """The text pieces; iterating again (or `complete()`) continues where it stopped."""
        if self._pieces is None:
            self._pieces = self._generate()
        return self._pieces

    def _generate(self) -> Iterator[str]:
        og, model = self.owner.og, self.owner.model
        result, timings = self.result, self.result.timings
        timings.prompt_tokens = len(self.ids)
        params = og.GeneratorParams(model)
        params.set_search_options(
            max_length=min(self.owner.context_length, len(self.ids) + self.settings.max_new_tokens),
            do_sample=False,
            repetition_penalty=self.settings.repetition_penalty,
            **self.settings.extra,
        )
        generator = og.Generator(model, params)
        if self.settings.adapter:  # per generator: concurrent runs never mix adapters
            generator.set_active_adapter(self.owner.adapters, self.settings.adapter)
        decoder = self.owner.tokenizer.create_stream()
        start = time.perf_counter()
        for piece in self._prompt_pieces():
            if self.should_stop():  # a client that left stops the prompt too, between pieces
                result.finish_reason = "stopped"
                return
            generator.append_tokens(piece)
        self._long = self._past_switch(len(self.ids))
        yield from self._decode(generator, decoder, start)

    def _decode(self, generator: Any, decoder: Any, start: float) -> Iterator[str]:
        """Greedy decoding in passes of at least two tokens: each step feeds the chosen token and
        a draft, keeps the drafted tokens the model would have chosen itself and rewinds the
        rest. The draft is up to `draft_tokens` tokens that followed the same words in the
        prompt (speculative.py); without one, a one-token guess.

        A pass of one token is never run because onnxruntime computes it differently from a
        pass of several: with the int4 model's int8 compute (MatMulNBits accuracy level 4), a
        last-bit difference in attention is amplified to ~1 in a logit by the next layer's
        quantized activations. Between passes of two tokens or more, every position's logits are
        the same to the bit however the tokens are grouped (tests/test_speculative.py), so the
        answer is the same token for token at any `draft_tokens`. Tokens are chosen as
        onnxruntime-genai's `generate_next_token` chooses them: the processors, its repetition
        penalty, then the first maximum."""
        from outpost.runtime.ask.speculative import Lookup, penalised

        result, timings, new_ids = self.result, self.result.timings, self.result.token_ids
        eos, penalty = self.owner.eos_ids, self.settings.repetition_penalty
        limit = min(self.owner.context_length, len(self.ids) + self.settings.max_new_tokens)
        lookup, seen = Lookup(self.ids), set(self.ids)
        least = int(self.settings.extra.get("min_length", 0))  # no end of text before it

        def choose(row: np.ndarray) -> int:
            row = penalised(self._processed(row, new_ids), seen, penalty)
            if len(self.ids) + len(new_ids) < least:
                row = np.array(row)
                row[list(eos)] = np.finfo(np.float32).min
            return int(row.argmax())

        def take(token: int) -> tuple[str, bool]:
            """The token kept: its text, and whether the answer is complete with it."""
            new_ids.append(token)
            seen.add(token)
            lookup.add(token)
            timings.new_tokens += 1
            if timings.new_tokens == 1:
                timings.first_token_s = time.perf_counter() - start
            timings.total_s = time.perf_counter() - start
            piece = decoder.decode(token) or ""
            result.text += piece
            return piece, token in eos or len(self.ids) + len(new_ids) >= limit

        token = choose(np.array(generator.get_logits(), dtype=np.float32).reshape(-1))
        result.finish_reason = "end"
        while True:
            if self.should_stop():
                result.finish_reason = "stopped"
                break
            piece, done = take(token)
            if piece:
                yield piece
            if done:
                break
            # Tokens a pass may add after `token`: the cache holds `limit` (so one more than the
            # answer may keep), and no pass spans LongRoPE's switch.
            fits = limit - len(self.ids) - len(new_ids)
            before_switch = self.owner.long_rope_switch - len(self.ids) - len(new_ids)
            if self.owner.long_rope_switch and before_switch >= 0:
                fits = min(fits, before_switch)
            draft = lookup.draft(min(self.settings.draft_tokens, fits - 1))
            guessed = not draft and fits > 0
            if guessed:
                draft = [lookup.guess()]
            if self._crosses(len(self.ids) + len(new_ids) + len(draft)):
                self._recompute(generator, self.ids + new_ids + draft)
            elif draft:
                generator.append_tokens([token, *draft])
            else:  # at LongRoPE's switch, no room after `token`: the token before it goes again
                generator.rewind_to(len(self.ids) + len(new_ids) - 2)
                generator.append_tokens((self.ids + new_ids)[-2:])
            out = generator.get_output("logits")  # every position's, after a recompute
            rows = np.asarray(out, dtype=np.float32).reshape(-1, out.shape[-1])[-(len(draft) + 1) :]
            if not guessed:
                timings.drafted += len(draft)
            kept = 0
            while True:  # the drafted tokens the model would have chosen, in order
                token = choose(rows[kept])
                if kept == len(draft) or token != draft[kept]:
                    break
                if self.should_stop():
                    result.finish_reason, done = "stopped", True
                    break
                kept += 1
                piece, done = take(token)
                if piece:
                    yield piece
                if done:
                    break
            if not guessed:
                timings.accepted += kept
            if done:
                break
            if kept < len(draft):  # the drafted tokens after the first miss leave the cache
                generator.rewind_to(len(self.ids) + len(new_ids))
        for p in self.processors:
            result.measured.update(p.measured())

    # LongRoPE (Phi-3.5-mini): the model rotates every position with its short factors while
    # the whole sequence is within `long_rope_switch` tokens and with its long ones past it (the
    # graph chooses by the total length of each pass). Keys already in the cache keep the
    # factors they were computed with, so a sequence that crosses the switch is read again
    # whole, as transformers does (Phi3ForCausalLM.prepare_inputs_for_generation drops the
    # cache): the logits are those of one pass over the whole text, on both sides. Speculative
    # passes stop at the switch, so the crossing is always one token's step. The crossing pass is
    # one pass over more than the switch's tokens (4097 logits rows: ~800 MB at 49k words); the
    # default context (1,536) never gets there.

    def _past_switch(self, total: int) -> bool:
        switch = self.owner.long_rope_switch
        return bool(switch) and total > switch

    def _crosses(self, total: int) -> bool:
        """A sequence of `total` tokens needs other factors than the cache was computed with."""
        return self._past_switch(total) != self._long

    def _recompute(self, generator: Any, sequence: list[int]) -> None:
        generator.rewind_to(0)
        generator.append_tokens(sequence)
        self._long = self._past_switch(len(sequence))

    def _prompt_pieces(self) -> list[list[int]]:
        """The prompt in PREFILL_CHUNK pieces, the last of two tokens or more. A LongRoPE prompt
        past the switch goes first in one piece that crosses it, so no position is rotated with
        the short factors."""
        if not self.ids:
            return []
        first = PREFILL_CHUNK
        if self._past_switch(len(self.ids)):
            first = max(first, self.owner.long_rope_switch + 1)
        rest = range(first, len(self.ids), PREFILL_CHUNK)
        pieces = [self.ids[:first], *(self.ids[at : at + PREFILL_CHUNK] for at in rest)]
        if len(pieces) > 1 and len(pieces[-1]) == 1:  # no pass of one token (`_decode`)
            pieces[-2:] = [pieces[-2] + pieces[-1]]
        return pieces

    def _processed(self, row: np.ndarray, new_ids: list[int]) -> np.ndarray:
        """One position's logits after the processors that act at this step."""
        for p in self.processors:
            if p.wants(new_ids):
                out = p(new_ids, row)
                if out is not None:
                    row = np.asarray(out, dtype=np.float32).reshape(-1)
        return row

    def complete(self) -> Generation:
        for _ in self:
            pass
        return self.result


class Generator:
    """One model; its runtime-switchable adapters (name -> .onnx_adapter file) are loaded beside
    it, and each run chooses one or none.

    The tokenizer is read at once (counting a prompt needs it); the model's weights load on
    first use or with `load()`, so `ask` can show the manual's line before paying for them."""

    def __init__(self, model_dir: Path, threads: int = 0, adapters: dict[str, Path] | None = None):
        os.environ["ORT_DISABLE_TELEMETRY"] = "1"
        import onnxruntime_genai as og

        self.og = og
        config = og.Config(str(model_dir))
        config.clear_providers()  # CPU
        if threads:
            overlay = {"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}
            config.overlay(json.dumps(overlay))
        self._config, self._adapter_files = config, dict(adapters or {})
        self._model_dir = model_dir
        self._model: Any = None
        self._adapters: Any = None
        self._lock = threading.Lock()
        self.tokenizer = og.Tokenizer(config)
        self.adapter_names = tuple(sorted(self._adapter_files))
        genai = json.loads((model_dir / "genai_config.json").read_text())
        self.context_length = int(genai["model"]["context_length"])
        self.vocab_size = int(genai["model"].get("vocab_size", 0))
        eos = genai["model"].get("eos_token_id", [])
        self.eos_ids = frozenset(int(e) for e in (eos if isinstance(eos, list) else [eos]))
        facts = model_dir / MODEL_FACTS  # what genai_config.json has no key for
        facts_read = json.loads(facts.read_text()) if facts.is_file() else {}
        self.long_rope_switch = int(facts_read.get("long_rope_switch", 0))  # 0: no LongRoPE
        self._digits: tuple[np.ndarray, dict[int, str], frozenset[int]] | None = None

    def load(self) -> None:
        """The model's weights (and its adapters) into memory, once; safe from any thread."""
        with self._lock:
            if self._model is not None:
                return
            model = self.og.Model(self._config)
            adapters = None
            if self._adapter_files:
                adapters = self.og.Adapters(model)
                for name, path in self._adapter_files.items():
                    adapters.load(str(path), name)
            self._adapters = adapters
            page_out(self._model_dir)
            self._model = model  # last: a thread that sees the model sees its adapters

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> Any:
        if self._model is None:
            self.load()
        return self._model

    @property
    def adapters(self) -> Any:
        if self._model is None:
            self.load()
        return self._adapters

    def digit_tokens(self) -> tuple[np.ndarray, dict[int, str], frozenset[int]]:
        """(ids of tokens holding a digit, {id: digits} of pure-digit tokens, ids ending in "["),
        built once per model."""
        if self._digits is None:
            from outpost.runtime.ask.support import digit_tokens

            self._digits = digit_tokens(self.tokenizer, self.vocab_size)
        return self._digits

    def logits(self, ids: list[int], adapter: str | None = None) -> np.ndarray:
        """Teacher-forced next-token logits [len(ids), vocab] (the conversion gate's view)."""
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=min(self.context_length, len(ids) + 1))
        generator = self.og.Generator(self.model, params)
        if adapter:
            generator.set_active_adapter(self.adapters, adapter)
        generator.append_tokens(ids)
        return np.array(generator.get_output("logits"))[0]

    def render(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)

    def encode(self, messages: list[dict]) -> list[int]:
        return [int(t) for t in self.tokenizer.encode(self.render(messages))]

    def count_tokens(self, messages: list[dict]) -> int:
        return len(self.tokenizer.encode(self.render(messages)))

    def refusal_gate(self, openings: Sequence[str], min_p: float) -> RefusalGate | None:
        """The gate for a refusal that opens with any of `openings` (same first token)."""
        encoded = [list(self.tokenizer.encode(o)) for o in openings]
        encoded = [e for e in encoded if len(e) >= 2 and e[0] == encoded[0][0]]
        if not encoded:
            return None  # a one-token refusal cannot be told from an answer's first word
        return RefusalGate(int(encoded[0][0]), frozenset(int(e[1]) for e in encoded), min_p)

    def run(
        self,
        prompt: list[dict] | list[int],
        settings: GenerationSettings,
        processors: Sequence[LogitsProcessor] = (),
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Run:
        """Greedy generation from chat messages (rendered with the model's template) or token ids."""
        if prompt and isinstance(prompt[0], dict):
            ids = self.encode(prompt)
        else:
            ids = list(cast("list[int]", prompt))
        return Run(self, ids, settings, processors, should_stop)
