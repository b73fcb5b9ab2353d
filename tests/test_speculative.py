"""Speculative decoding by prompt lookup (runtime/ask/speculative.py, generate.py `Run._decode`):
the draft is what followed the answer's last tokens in the prompt, every pass is of two tokens or
more, and greedy output is the same token for token at any number of drafted tokens."""

import json

import pytest

from conftest import EXAMPLES, Recorder
from outpost.runtime.ask.speculative import Lookup, penalised


def test_the_draft_is_what_followed_the_latest_match_of_the_tail():
    lookup = Lookup([5, 6, 7, 8, 9, 1, 6, 7, 3, 4])
    for token in (2, 6, 7):
        lookup.add(token)
    # Tail (2, 6, 7) never came before; (6, 7) did, last before 3, 4.
    assert lookup.draft(4) == [3, 4, 2, 6]
    assert lookup.draft(1) == [3]
    lookup.add(99)  # (7, 99) and (99,) are new: a one-token match is not a draft
    assert lookup.draft(4) == []
    assert lookup.guess() == 99  # nor a guess: the token itself
    lookup.add(6)
    assert lookup.guess() == 7  # 6 came before 7 last (the answer's own 6, 7)
    assert Lookup([1, 2]).draft(0) == []


def test_the_penalty_is_onnxruntime_genais():
    import numpy as np

    row = np.array([2.0, -2.0, 1.0, 0.0], dtype=np.float32)
    out = penalised(row, {0, 1, 3}, 2.0)
    assert out.tolist() == [1.0, -4.0, 1.0, 0.0]  # divided when positive, multiplied when not
    assert row.tolist() == [2.0, -2.0, 1.0, 0.0]  # the caller's row is left alone
    assert penalised(row, {0}, 1.0) is row


def _questions(n: int) -> list[str]:
    lines = (EXAMPLES / "questions.jsonl").read_text().splitlines()
    return [json.loads(x)["question"] for x in lines if x.strip()][:n]


@pytest.mark.slow
def test_answers_are_the_same_token_for_token_with_and_without_drafts(tiny_bundle):
    """Through the whole ask walk (refusal gate, number copy, repetition penalty), on the tiny
    Phi-3: the drafts are used and change nothing."""
    from outpost.runtime.ask.assistant import open_assistant
    from outpost.runtime.config import AskConfig

    plain = open_assistant(tiny_bundle, AskConfig(max_new_tokens=40, support=False, draft_tokens=0))
    fast = open_assistant(tiny_bundle, AskConfig(max_new_tokens=40, support=False, draft_tokens=4))
    accepted = 0
    for question in _questions(6):
        a, b = plain.ask(question), fast.ask(question)
        assert (b.generated, b.text, b.answer_mode) == (a.generated, a.text, a.answer_mode)
        assert a.timings.drafted == 0
        accepted += b.timings.accepted
    assert accepted > 0  # the lookup really drafted tokens the model kept


@pytest.mark.slow
def test_smollm2_int4_logits_are_the_same_to_the_bit_at_any_draft(smol_bundle):
    """The shipped SmolLM2 (int4, MatMulNBits at int8 compute): every pass is of two tokens or
    more, so each position's logits are the same to the bit however the drafts and the prompt's
    pieces group the tokens, and so is the answer. (A pass of one token differs from one of
    several by up to ~1 in a logit there, which parted greedy output on 3 of 8 benchmark
    prompts before.)"""
    import numpy as np

    from outpost.runtime.ask.generate import GenerationSettings, Generator
    from outpost.runtime.bundle.open import open_bundle

    gen = Generator(open_bundle(smol_bundle).model_dir, threads=2)
    docs = sorted((EXAMPLES / "docs").rglob("*.md"))[:3]
    drafted = 0
    for doc, question in zip(docs, _questions(3)):
        messages = [
            {"role": "user", "content": f"{doc.read_text()[:1500]}\n\nQuestion: {question}"}
        ]
        ids = gen.encode(messages)
        runs = []
        for k in (0, 2, 6):
            seen = Recorder()
            settings = GenerationSettings(
                48, 1.05, draft_tokens=k, extra={"min_length": len(ids) + 48}
            )
            runs.append((gen.run(ids, settings, [seen]).complete(), seen.rows))
        (plain, rows), *others = runs
        assert len(plain.token_ids) == 48
        for run, other_rows in others:
            assert run.token_ids == plain.token_ids
            assert len(other_rows) == len(rows)
            assert all(np.array_equal(a, b) for a, b in zip(rows, other_rows))
            drafted += run.timings.drafted
        assert plain.timings.drafted == 0
        # ... and they are the logits of one pass over the prompt and the answer, which the
        # conversion gate compares with the full-precision model (export/llm/gate.py).
        forced = gen.logits(ids + plain.token_ids[:-1])[len(ids) - 1 :]
        assert all(np.array_equal(a, b) for a, b in zip(rows, forced))
    assert drafted > 0  # the drafts were really tried


def test_no_prompt_piece_is_one_token(monkeypatch):
    """The prompt's pieces (generate.py `Run._prompt_pieces`): a one-token last piece joins the
    one before it, so no pass of the prompt is of one token either."""
    from outpost.runtime.ask import generate

    class Owner:
        long_rope_switch = 0

    monkeypatch.setattr(generate, "PREFILL_CHUNK", 4)
    for n in range(1, 14):
        ids = list(range(n))
        pieces = generate.Run(
            Owner(), ids, generate.GenerationSettings(), [], bool
        )._prompt_pieces()
        assert sum(pieces, []) == ids
        assert all(len(p) >= 2 for p in pieces) or pieces == [[0]]
        assert all(len(p) <= 5 for p in pieces)
