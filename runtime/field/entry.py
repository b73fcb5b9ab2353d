"""What the field log keeps of an answer and of a verdict (docs/feedback.md has every key).

Texts are bounded here, so that one entry always fits one log file: the question at
QUESTION_CHARS, the answer and each line at TEXT_CHARS, the note at NOTE_CHARS.
"""

from __future__ import annotations

import secrets

from outpost.runtime.ask.answer import Answer
from outpost.runtime.field.log import now

QUESTION_CHARS = 2000
TEXT_CHARS = 1000
NOTE_CHARS = 500


def new_id() -> str:
    """An answer's id, in the shape of an OpenAI completion id (what the API returns)."""
    return "chatcmpl-" + secrets.token_hex(12)


def answer_entry(
    answer: Answer,
    *,
    id: str,
    via: str,
    bundle: str,
    signed_by: str | None = None,
    adapter: str | None = None,
    follow_up: bool = False,
) -> dict:
    e = answer.evidence[0] if answer.evidence else None
    quote = None
    if e is not None:
        quote = {
            "chunk_id": e.chunk_id,
            "start": e.start,
            "end": e.end,
            "source": e.source,
            "heading": e.heading,
            "text": e.text[:TEXT_CHARS],
        }
    return {
        "v": 1,
        "kind": "answer",
        "id": id,
        "time": now(),
        "via": via,
        "bundle": bundle,
        "signed_by": signed_by,
        "adapter": adapter,
        "question": answer.question[:QUESTION_CHARS],
        "follow_up": follow_up,
        "language": answer.language,
        "mode": "declined" if answer.declined else answer.answer_mode,
        "declined_by": answer.declined_by,
        "answer": answer.text[:TEXT_CHARS],
        "quote": quote,
        "candidates": [
            {"source": s, "heading": h, "text": t[:TEXT_CHARS]} for s, h, t in answer.candidates
        ],
    }


def verdict_entry(id: str, helpful: bool, note: str | None, via: str) -> dict:
    note = (note or "").strip()[:NOTE_CHARS] or None
    return {
        "v": 1,
        "kind": "verdict",
        "id": id,
        "time": now(),
        "via": via,
        "helpful": helpful,
        "note": note,
    }
