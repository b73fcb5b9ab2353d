"""The conversion gate: is the exported model still the model that was trained?

The exported (quantised) model and the full-precision model (the adapter merged, or applied)
both read the same held-out text, in the runtime's own prompt layout: a system prompt, one of
the bundle's passages, a question made from it and the passage's own line as the answer. Teacher
forced, every position is compared:

- top-1 agreement: the share of positions where both models rank the same next token first;
- mean KL divergence of the exported model's next-token distribution from the reference's;
- the perplexity ratio on the text (exported / full precision).

Greedy answers to a few of those prompts are recorded too, as a secondary number: one early
flip makes a whole greedy sequence "disagree", so it never decides anything.

The export fails when the model falls outside the bound for its precision (`BOUNDS`, measured
and explained in docs/decisions.md); `--allow-degraded-model` records the numbers and ships it.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass

import numpy as np

from outpost.runtime.errors import ModelError

SEQUENCES = 8  # held-out prompts compared position by position
MAX_TOKENS = 512  # per prompt: passage, question and answer
ANSWERS = 3  # prompts whose greedy answers are recorded
ANSWER_TOKENS = 32
OVERRIDE = "--allow-degraded-model"


@dataclass(frozen=True)
class Bound:
    min_top1: float  # at least this share of next tokens agree
    max_kl: float  # mean KL divergence (nats) at most this
    max_ppl_ratio: float  # perplexity at most this many times the full-precision one


# Chosen from measurements on SmolLM2-135M and the tiny random Phi-3 (docs/decisions.md,
# "The conversion gate"): each bound sits well below what a good conversion of that precision
# scores on both, and well above what a broken one (a scaled or corrupted weight) scores.
BOUNDS = {
    "fp32": Bound(min_top1=0.98, max_kl=0.01, max_ppl_ratio=1.02),
    "int8": Bound(min_top1=0.90, max_kl=0.05, max_ppl_ratio=1.10),
    "int4": Bound(min_top1=0.50, max_kl=1.0, max_ppl_ratio=2.0),
}


@dataclass
class Sample:
    ids: list[int]  # prompt and answer, as the runtime tokenises them
    prompt_tokens: int  # where the answer starts
    question: str


def samples(chunks, generator, n: int = SEQUENCES, seed: int = 0) -> list[Sample]:
    """Held-out prompts from the bundle's own passages: the passage, a question made from its
    first sentence, and its next sentences as the answer."""
    from outpost.runtime.ask.prompt import Passage, build_messages

    rng = random.Random(seed)
    usable = [c for c in chunks if len(c.text) >= 120] or list(chunks)
    picked = rng.sample(usable, min(n, len(usable)))
    out = []
    for chunk in picked:
        sentences = re.split(r"(?<=[.!?])\s+", " ".join(chunk.text.split()))
        question = " ".join(sentences[0].split()[:20]).rstrip(".!?") + "?"
        answer = " ".join(sentences[1:3] or sentences[:1])[:300]
        passage = Passage(chunk.source, chunk.heading, chunk.text[:1200])
        prompt = generator.encode(build_messages(question, [passage]))
        answer_ids = [int(t) for t in generator.tokenizer.encode(answer)]
        ids = (prompt + answer_ids)[:MAX_TOKENS]
        out.append(Sample(ids, min(len(prompt), len(ids)), question))
    return out


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


@dataclass
class Agreement:
    """Teacher-forced agreement, summed over samples, finished by `report`."""

    positions: int = 0
    same_top1: int = 0
    kl_sum: float = 0.0
    nll_ref: float = 0.0
    nll_got: float = 0.0

    def add(self, ref: np.ndarray, got: np.ndarray, ids: list[int]) -> None:
        """`ref`/`got`: logits [positions, vocab] for `ids`; position i predicts ids[i + 1]."""
        vocab = min(ref.shape[-1], got.shape[-1])  # padded vocabularies: the shared part
        a, b = _log_softmax(ref[:-1, :vocab]), _log_softmax(got[:-1, :vocab])
        target = np.asarray(ids[1:])
        rows = np.arange(len(target))
        self.positions += len(target)
        self.same_top1 += int((a.argmax(-1) == b.argmax(-1)).sum())
        self.kl_sum += float((np.exp(a) * (a - b)).sum())
        self.nll_ref += float(-a[rows, target].sum())
        self.nll_got += float(-b[rows, target].sum())

    def report(self) -> dict:
        n = max(self.positions, 1)
        return {
            "positions": self.positions,
            "top1_agreement": round(self.same_top1 / n, 4),
            "mean_kl": round(self.kl_sum / n, 5),
            "perplexity_ratio": round(float(np.exp((self.nll_got - self.nll_ref) / n)), 4),
            "perplexity_full_precision": round(float(np.exp(self.nll_ref / n)), 3),
        }


def torch_logits(model, ids: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def torch_greedy(model, tokenizer, ids: list[int], n: int) -> list[int]:
    import torch

    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=n,
            do_sample=False,
            pad_token_id=tokenizer.eos_token_id,
        )
    return out[0, len(ids) :].tolist()


def measure(model, tokenizer, generator, prompts: list[Sample], adapter: str | None = None) -> dict:
    """Teacher-forced agreement of `generator` (the exported model, with `adapter` active) with
    the full-precision `model`, and the greedy answers to the first prompts."""
    from outpost.runtime.ask.generate import GenerationSettings

    agreement = Agreement()
    for s in prompts:
        agreement.add(torch_logits(model, s.ids), generator.logits(s.ids, adapter), s.ids)
    answers, same_tokens, total = [], 0, 0
    settings = GenerationSettings(max_new_tokens=ANSWER_TOKENS, adapter=adapter)
    for s in prompts[:ANSWERS]:
        prompt = s.ids[: s.prompt_tokens]
        ref = torch_greedy(model, tokenizer, prompt, ANSWER_TOKENS)
        got = generator.run(prompt, settings).complete().token_ids[: len(ref)]
        same_tokens += sum(a == b for a, b in zip(ref, got))
        total += max(len(ref), 1)
        answers.append(
            {
                "question": s.question,
                "full_precision": tokenizer.decode(ref, skip_special_tokens=True),
                "exported": tokenizer.decode(got, skip_special_tokens=True),
                "same": ref == got,
            }
        )
    return {
        **agreement.report(),
        "prompts": len(prompts),
        "answers": answers,
        "greedy_token_agreement": round(same_tokens / max(total, 1), 4),
    }


def judge(report: dict, precision: str) -> dict:
    """`report` with the bound for `precision` and whether it passed (and why not)."""
    bound = BOUNDS[precision]
    failures = []
    if report["top1_agreement"] < bound.min_top1:
        failures.append(
            f"next-token agreement {report['top1_agreement']:.1%} (needs {bound.min_top1:.0%})"
        )
    if report["mean_kl"] > bound.max_kl:
        failures.append(f"KL divergence {report['mean_kl']:.3f} (at most {bound.max_kl})")
    if report["perplexity_ratio"] > bound.max_ppl_ratio:
        failures.append(
            f"perplexity {report['perplexity_ratio']:.2f}x (at most {bound.max_ppl_ratio}x)"
        )
    passed = not failures
    return {
        **report,
        "precision": precision,
        "bound": asdict(bound),
        "failures": failures,
        "passed": passed,
    }


def check_rope(gate: dict, config: dict, model_dir) -> dict:
    """A LongRoPE model's export must switch to the long factors where the model does. The
    teacher-forced numbers cannot always tell: on the tiny random Phi-3.5-mini an int4 export
    read as plain RoPE agrees 80 % (a right one 81 %), so the graph is read as well."""
    from outpost.export.llm.convert import graph_rope_switch, long_rope_switch

    expected, found = long_rope_switch(config), graph_rope_switch(model_dir)
    gate["long_rope_switch"] = {"model": expected, "export": found}
    if expected != found:
        said = f"at {found} tokens" if found else "not at all"
        gate["failures"].append(
            f"LongRoPE switches to its long factors {said}, the model at {expected or 'none'}"
        )
        gate["passed"] = False
    return gate


def enforce(gate: dict, what: str, allow: bool) -> None:
    """Raise the one-line error for a failed gate unless `allow` (the override flag)."""
    if gate["passed"] or allow:
        return
    raise ModelError(
        f"the exported {what} is not the model it was converted from: "
        f"{'; '.join(gate['failures'])} against full precision on the bundle's own text; "
        f"check the base model and adapter, try --precision int8 or --quant-algo, or pass "
        f"{OVERRIDE} to ship it anyway"
    )
