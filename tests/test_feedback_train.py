"""What the field loop teaches (trainer/feedback.py): verdicts from feedback exports become the
line ranker's groups and the adapter's examples; with --trust only signed releases' answers."""

import json

from outpost.export.ship.sign import generate_keypair
from outpost.runtime.ask.prompt import REFUSAL
from outpost.runtime.ask.rerank import pair_text
from outpost.runtime.bundle.verify import fingerprint
from outpost.runtime.field import exchange
from outpost.trainer import feedback
from outpost.trainer.ranker.crossrank import _pairs

QUOTE = {
    "chunk_id": 7,
    "start": 0,
    "end": 38,
    "source": "px200.md",
    "heading": "PX-200 > Limits",
    "text": "Maximum system pressure: 280 bar.",
}
CANDIDATES = [
    {
        "source": "px200.md",
        "heading": "PX-200 > Limits",
        "text": "The relief valve opens at 300 bar.",
    },
    {"source": "px200.md", "heading": "PX-200", "text": "The PX-200 is a hydraulic press."},
]


def row(n, helpful, mode="quoted", signed_by=None, **extra):
    return {
        "v": 1,
        "id": f"chatcmpl-{n:024x}",
        "time": f"2026-12-02T10:00:{n:02d}Z",
        "via": "kiosk",
        "bundle": "ab" * 32,
        "signed_by": signed_by,
        "question": f"What is the maximum pressure of the PX-200? ({n})",
        "language": "en",
        "mode": mode,
        "declined_by": "evidence" if mode == "declined" else None,
        "answer": QUOTE["text"] if mode != "declined" else "The documents do not cover this.",
        "quote": QUOTE if mode != "declined" else None,
        "candidates": CANDIDATES,
        "helpful": helpful,
        "note": None,
        "rated": None if helpful is None else "2026-12-02T10:01:00Z",
        **extra,
    }


def export(tmp_path, rows, name="device.jsonl"):
    path = tmp_path / name
    exchange.write(rows, path)
    return path


def test_confirmed_and_rejected_quotes_become_ranker_groups(tmp_path):
    rows = [row(1, True), row(2, False), row(3, None), row(4, True, mode="declined")]
    loaded, counts = feedback.load([export(tmp_path, rows), export(tmp_path, rows, "again.jsonl")])
    assert counts["rows"] == 4 and counts["duplicates"] == 4
    groups, made = feedback.ranker_groups(loaded)
    by_kind = {g["kind"]: g for g in groups}
    confirmed = by_kind["confirmed"]
    assert confirmed["lines"][0] == pair_text(QUOTE["heading"], QUOTE["text"])
    assert confirmed["labels"] == [1, 0, 0] and confirmed["roles"] == ["answer", "hard", "hard"]
    assert by_kind["rejected"]["labels"] == [0]
    assert by_kind["confirmed decline"]["labels"] == [0, 0]
    assert made["not rated"] == 1 and all(g["split"] == "train" for g in groups)
    # The ranker's fit reads them like its own groups: the confirmed line is a positive pair.
    import random

    pairs = _pairs(groups, random.Random(0), {"near": 1, "hard": 4, "easy": 1})
    assert (confirmed["question"], confirmed["lines"][0], 1.0) in pairs
    assert sum(label for _, _, label in pairs) == 1.0


def test_confirmed_answers_and_declines_become_adapter_examples(tmp_path):
    rows = [row(1, True), row(2, False), row(3, True, mode="declined", candidates=[])]
    loaded, _ = feedback.load([export(tmp_path, rows)])
    examples, made = feedback.conversations(loaded)
    assert made == {"grounded": 1, "decline": 1, "not confirmed": 1}
    grounded, decline = examples
    assert grounded[-1] == {"role": "assistant", "content": QUOTE["text"]}
    assert "280 bar" in grounded[-2]["content"] and "300 bar" in grounded[-2]["content"]
    assert decline[-1] == {"role": "assistant", "content": REFUSAL}
    json.dumps(examples)  # what the trainer tokenizes: plain messages


def test_with_trust_only_answers_of_signed_releases_are_used(tmp_path):
    key_id = generate_keypair(tmp_path / "release.key", tmp_path / "release.pub")
    assert key_id == fingerprint((tmp_path / "release.pub").read_bytes())
    other = generate_keypair(tmp_path / "other.key", tmp_path / "other.pub")
    rows = [row(1, True, signed_by=key_id), row(2, True, signed_by=other), row(3, True)]
    loaded, counts = feedback.load([export(tmp_path, rows)], trust=[tmp_path / "release.pub"])
    assert [r["id"] for r in loaded] == [rows[0]["id"]] and counts["untrusted"] == 2
