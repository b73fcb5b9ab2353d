"""What the field loop teaches: feedback exports (`outpost feedback export`, docs/feedback.md)
turned into training data for the line ranker and for the adapter.

- For the ranker (trainer/ranker/rankdata.py `--feedback`), each group is a question with its
  lines labelled, as rankdata's own groups are:
  - a confirmed quote: the quoted line is 1, and the lines the device's ranker rated next
    (`candidates`) are 0;
  - a rejected quote: the quoted line is 0;
  - a decline people confirmed: its candidates are 0 (an unanswerable question).
- For the adapter (`outpost train --feedback`):
  - a confirmed answer becomes a grounded example: the quote (and the next two candidates) as
    the passages, the answer shown as the reply;
  - a confirmed decline becomes a decline example, with the refusal as the reply.
  Answers nobody rated, and rejected answers, teach the adapter nothing.

`trust`: with keys given, only answers from releases those keys signed are used (`signed_by`,
recorded by a device that verified the release with --trust). The rest are counted and left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from outpost.runtime.ask.prompt import REFUSAL, Passage, build_messages
from outpost.runtime.ask.rerank import pair_text
from outpost.runtime.field import exchange

PASSAGES = 3  # passages of a grounded example from feedback: the quote and two candidates


def load(
    paths: Sequence[str | Path], trust: Sequence[str | Path] = ()
) -> tuple[list[dict], Counter]:
    """The merged rows of the exports (each answer once), only trusted releases' with `trust`."""
    rows, merged = exchange.merge(paths)
    counts: Counter[str] = Counter(files=merged["files"], duplicates=merged["duplicates"])
    if trust:
        from outpost.runtime.bundle.verify import load_public_keys

        keys = load_public_keys([Path(t) for t in trust])
        kept = [r for r in rows if r.get("signed_by") in keys]
        counts["untrusted"] = len(rows) - len(kept)
        rows = kept
    counts["rows"] = len(rows)
    return rows, counts


def _lines(row: dict) -> list[str]:
    return [pair_text(c.get("heading", ""), c.get("text", "")) for c in row.get("candidates") or []]


def ranker_groups(rows: list[dict]) -> tuple[list[dict], Counter]:
    """Training groups in rankdata's shape (source "feedback", split "train")."""
    groups, counts = [], Counter[str]()
    for r in rows:
        quote, helpful = r.get("quote"), r.get("helpful")
        declined = r.get("mode") == "declined"
        if helpful is None:
            counts["not rated"] += 1
            continue
        if not declined and quote and helpful:
            lines = [pair_text(quote.get("heading", ""), quote["text"]), *_lines(r)]
            labels = [1] + [0] * (len(lines) - 1)
            kind = "confirmed"
        elif not declined and quote:
            lines, labels, kind = (
                [pair_text(quote.get("heading", ""), quote["text"])],
                [0],
                "rejected",
            )
        elif declined and helpful and r.get("candidates"):
            lines = _lines(r)
            labels, kind = [0] * len(lines), "confirmed decline"
        else:
            counts["nothing to learn"] += 1
            continue
        counts[kind] += 1
        groups.append(
            {
                "id": r["id"],
                "package": f"feedback:{str(r.get('bundle', ''))[:12]}",
                "source": "feedback",
                "kind": kind,
                "question": r["question"],
                "lines": lines,
                "labels": labels,
                "roles": ["answer" if label else "hard" for label in labels],
                "split": "train",
            }
        )
    return groups, counts


def conversations(rows: list[dict]) -> tuple[list[list[dict]], Counter]:
    """Chat examples for the adapter: confirmed answers grounded on their quote, confirmed
    declines answered with the refusal."""
    out, counts = [], Counter[str]()
    for r in rows:
        if not r.get("helpful"):
            counts["not confirmed"] += 1
            continue
        language = r.get("language") or "en"
        candidates = [
            Passage(c.get("source", ""), c.get("heading", ""), c.get("text", ""))
            for c in r.get("candidates") or []
        ]
        if r.get("mode") == "declined":
            passages, reply = candidates[:PASSAGES], REFUSAL
            counts["decline"] += 1
        elif r.get("quote") and r.get("answer"):
            q = r["quote"]
            passages = [Passage(q.get("source", ""), q.get("heading", ""), q["text"])]
            passages += candidates[: PASSAGES - 1]
            reply = r["answer"]
            counts["grounded"] += 1
        else:
            counts["nothing to learn"] += 1
            continue
        messages = build_messages(r["question"], passages, (), language)
        out.append([*messages, {"role": "assistant", "content": reply}])
    return out, counts
