"""Speculative decoding by prompt lookup: an answer from the manuals mostly copies spans of its
passages, so the tokens that followed the answer's last few tokens in the prompt are a good guess
at what comes next. The model checks a guess of several tokens in one forward pass, about what
one token costs on a CPU, and keeps the tokens it would have chosen itself
(runtime/ask/generate.py, `Run._decode`): greedy output does not change.

- `Lookup`: the draft, the tokens that followed the most recent earlier occurrence of the last
  NGRAM tokens (fewer when that finds none, down to MIN_NGRAM) in the prompt and the answer;
  `guess`, one token from a one-token match, for a pass that has no draft.
- `penalised`: onnxruntime-genai's repetition penalty, as its CPU search applies it (every token
  of the prompt and the answer once: a positive logit divided by the penalty, a negative one
  multiplied), so a token is chosen as `generate_next_token` chooses it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

NGRAM, MIN_NGRAM = 3, 2  # a one-token match drafts badly (measured: docs/benchmarks.md)


class Lookup:
    """The prompt and the answer so far, indexed by their n-grams (each n-gram's latest end)."""

    def __init__(self, prompt: Iterable[int]):
        self.tokens: list[int] = []
        self.last: dict[tuple[int, ...], int] = {}  # n-gram -> where the token after it is
        for token in prompt:
            self.add(token)

    def add(self, token: int) -> None:
        """One more token; the n-grams that end before it now point at it."""
        t, end = self.tokens, len(self.tokens)
        for n in range(1, NGRAM + 1):
            if end >= n:
                self.last[tuple(t[end - n :])] = end
        t.append(token)

    def draft(self, most: int) -> list[int]:
        """Up to `most` tokens that followed the latest earlier occurrence of the longest tail
        (NGRAM tokens down to MIN_NGRAM) that occurred before."""
        t = self.tokens
        if most <= 0:
            return []
        for n in range(min(NGRAM, len(t)), MIN_NGRAM - 1, -1):
            at = self.last.get(tuple(t[len(t) - n :]))
            if at is not None and at < len(t):
                return t[at : at + most]
        return []

    def guess(self) -> int:
        """One token: what followed the last token where it occurred before, else itself (the
        second token of a pass that has no draft: runtime/ask/generate.py `Run._decode`)."""
        t = self.tokens
        at = self.last.get((t[-1],))
        return t[at] if at is not None and at < len(t) else t[-1]


def penalised(row: np.ndarray, seen: set[int], penalty: float) -> np.ndarray:
    """`row` (float32 logits) with the repetition penalty on the tokens in `seen`."""
    if penalty == 1.0 or not seen:
        return row
    out = np.array(row, dtype=np.float32)
    ids = np.fromiter(seen, dtype=np.int64, count=len(seen))
    values = out[ids]
    p = np.float32(penalty)
    out[ids] = np.where(values > 0, values / p, values * p)
    return out
