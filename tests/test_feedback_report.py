"""The field report (export/field/: similar.py, report.py, html.py) and its command
(`feedback_report` in export/cli.py), over a log written here with the exchange's own writer: no
bundle, no model."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from outpost.export.cli import feedback_report
from outpost.export.field.html import as_html, chart_weeks
from outpost.export.field.report import as_text, build_report
from outpost.runtime.field import exchange

FIRMWARE = "How do I flash the firmware over Bluetooth?"
FIRMWARE_AGAIN = "Can I flash firmware via Bluetooth?"
PAIRING = "How do I pair the controller over Bluetooth?"
WARRANTY = "What is the warranty period?"
HOSTILE = '<script>alert("x")</script> reset the \x1b[2J controller?'
PORT_LINE = {
    "chunk_id": 7,
    "start": 0,
    "end": 33,
    "source": "network.md",
    "heading": "Ports",
    "text": "The server listens on port 8080.",
}
TORQUE_LINE = {
    "chunk_id": 3,
    "start": 0,
    "end": 29,
    "source": "wheels.md",
    "heading": "Wheels",
    "text": "Tighten the bolts to 120 Nm.",
}


def answer(n, time, question, mode="quoted", quote=None, helpful=None, note=None, **extra):
    """One row as the exchange writes it: an answer entry with its verdict joined in."""
    row = {
        "v": 1,
        "id": f"chatcmpl-{n:024x}",
        "time": time,
        "via": "kiosk",
        "bundle": "ab" * 32,
        "signed_by": None,
        "adapter": None,
        "question": question,
        "follow_up": False,
        "language": "en",
        "mode": mode,
        "declined_by": "threshold" if mode == "declined" else None,
        "answer": "The manuals do not say." if mode == "declined" else "See the quote.",
        "quote": quote,
        "candidates": [],
        "helpful": helpful,
        "note": note,
        "rated": None if helpful is None else time,
    }
    row.update(extra)
    return row


ROWS = [
    # week 2026-W49
    answer(1, "2026-11-30T08:00:00Z", FIRMWARE, "declined"),
    answer(
        2,
        "2026-12-01T09:00:00Z",
        FIRMWARE_AGAIN,
        "declined",
        helpful=False,
        note="an update without the cable",
        declined_by="evidence",
    ),  # fmt: skip
    answer(3, "2026-12-02T07:04:01Z", FIRMWARE.lower(), "declined"),
    answer(4, "2026-12-02T10:00:00Z", WARRANTY, "declined", helpful=True),  # confirmed: no gap
    answer(5, "2026-12-03T11:00:00Z", PAIRING, "declined", declined_by="name"),
    answer(
        6,
        "2026-12-04T12:00:00Z",
        "Which torque for the wheel bolts?",
        quote=TORQUE_LINE,
        helpful=True,
    ),  # fmt: skip
    # week 2026-W50
    answer(
        7,
        "2026-12-07T08:00:00Z",
        "Which port does the API listen on?",
        quote=PORT_LINE,
        helpful=False,
        note="the admin port, not the API",
    ),  # fmt: skip
    answer(
        8,
        "2026-12-08T08:00:00Z",
        "What is the admin console's port?",
        quote=PORT_LINE,
        helpful=False,
        note="<b>admin</b> console",
    ),  # fmt: skip
    answer(
        9, "2026-12-08T09:00:00Z", "How tight are the wheel bolts?", "generated", quote=TORQUE_LINE
    ),  # fmt: skip
    answer(
        10, "2026-12-09T09:00:00Z", "Torque for the wheel bolts?", quote=TORQUE_LINE, helpful=True
    ),  # fmt: skip
    answer(11, "2026-12-10T09:00:00Z", HOSTILE, "declined"),
]
COUNTS = {"files": 2, "entries": 12, "kept": 11, "duplicates": 1, "dropped": 3}


@pytest.fixture
def export_file(tmp_path):
    path = tmp_path / "kiosk.feedback.jsonl"
    exchange.write(ROWS, path, dropped=3, device="kiosk-3")
    return path


def group_of(report, question):
    return next(g for g in report["unanswered"] if g["question"] == question)


def test_similar_declines_are_grouped_and_a_confirmed_decline_is_not_a_gap():
    report = build_report(ROWS, COUNTS)
    assert report["grouping"] == {"by": "words", "jaccard": 0.5}
    gaps = report["unanswered"]
    first = gaps[0]  # the firmware question: asked twice as written, once in other words
    assert first["question"] == FIRMWARE and first["count"] == 3
    assert first["others"] == [FIRMWARE_AGAIN] and first["wordings"] == 2
    assert first["notes"] == ["an update without the cable"]
    assert first["declined_by"] == {"threshold": 2, "evidence": 1}
    assert first["languages"] == {"en": 3} and first["marked_unhelpful"] == 1
    assert first["last"] == "2026-12-02T07:04:01Z"
    pairing = group_of(report, PAIRING)  # shares "bluetooth", a different request
    assert (
        pairing["count"] == 1 and pairing["others"] == [] and pairing["declined_by"] == {"name": 1}
    )
    asked = {g["question"] for g in gaps} | {o for g in gaps for o in g["others"]}
    assert WARRANTY not in asked  # a decline confirmed right is not a gap
    # The unhelpful answers are gaps too, and their questions differ: two groups.
    assert {"Which port does the API listen on?", "What is the admin console's port?"} <= asked
    assert len(gaps) == 5 and sum(g["count"] for g in gaps) == report["totals"]["gaps"] == 7
    assert [g["count"] for g in gaps] == sorted((g["count"] for g in gaps), reverse=True)


def test_grouping_by_meaning_takes_the_embedders_cosine():
    # Vectors chosen by hand: the pairing question near the firmware one, the other wording of
    # the firmware question under the threshold; every other question on an axis of its own.
    near = {
        FIRMWARE: [1, 0, 0],
        FIRMWARE_AGAIN: [0.6, 0.8, 0],  # cosine 0.6 with FIRMWARE: under 0.7, its own group
        PAIRING: [0.8, 0, 0.6],  # cosine 0.8: one group by meaning, though few words match
    }
    embedded = []

    def embed(texts):
        embedded.extend(texts)
        vectors = np.zeros((len(texts), 3 + len(texts)), dtype=np.float32)
        for n, t in enumerate(texts):
            if t in near:
                vectors[n, :3] = near[t]
            else:
                vectors[n, 3 + n] = 1
        return vectors

    report = build_report(ROWS, COUNTS, embed=embed)
    assert report["grouping"] == {"by": "meaning", "cosine": 0.7}
    first = group_of(report, FIRMWARE)
    assert first["others"] == [PAIRING] and first["count"] == 3
    assert group_of(report, FIRMWARE_AGAIN)["count"] == 1
    assert len(embedded) == len(set(embedded)) == 6  # each wording of a gap embedded once
    # A question in a language the embedder was not trained on is compared by words.
    german = answer(12, "2026-12-11T09:00:00Z", "Wie flashe ich die Firmware über Bluetooth?",
                    "declined", language="de")  # fmt: skip
    embedded.clear()
    report = build_report([*ROWS, german], COUNTS, embed=embed, embed_languages=["en"])
    assert german["question"] not in embedded and len(embedded) == 6
    assert group_of(report, german["question"])["count"] == 1  # 1 term in 7 shared


def test_unhelpful_quotes_are_grouped_with_their_questions_and_notes():
    quotes = build_report(ROWS, COUNTS)["unhelpful_quotes"]
    assert quotes == [
        {
            "source": "network.md",
            "heading": "Ports",
            "text": "The server listens on port 8080.",
            "count": 2,
            "questions": [
                "Which port does the API listen on?",
                "What is the admin console's port?",
            ],
            "wordings": 2,
            "notes": ["the admin port, not the API", "<b>admin</b> console"],
        }
    ]


def test_numbers_per_document_per_week_and_in_total():
    report = build_report(ROWS, COUNTS)
    assert report["by_document"] == [
        {
            "source": "network.md",
            "answers": 2,
            "rated": 2,
            "helpful": 0,
            "unhelpful": 2,
            "helpful_share": 0.0,
        },  # fmt: skip
        {
            "source": "wheels.md",
            "answers": 3,
            "rated": 2,
            "helpful": 2,
            "unhelpful": 0,
            "helpful_share": 1.0,
        },  # fmt: skip
    ]
    assert report["by_week"] == [
        {
            "week": "2026-W49",
            "answers": 6,
            "declined": 5,
            "rated": 3,
            "helpful": 2,
            "unhelpful": 1,
            "helpful_share": 0.6667,
        },  # fmt: skip
        {
            "week": "2026-W50",
            "answers": 5,
            "declined": 1,
            "rated": 3,
            "helpful": 1,
            "unhelpful": 2,
            "helpful_share": 0.3333,
        },  # fmt: skip
    ]
    assert report["totals"] == {
        "answers": 11, "rated": 6, "helpful": 3, "unhelpful": 3, "declined": 6, "gaps": 7,
        "files": 2, "duplicates": 1, "dropped": 3,
    }  # fmt: skip
    empty = build_report([], {"files": 1, "duplicates": 0, "dropped": 0})
    assert empty["unanswered"] == [] and empty["by_week"] == [] and empty["totals"]["answers"] == 0
    assert "<svg" in as_html(empty) and "none" in as_text(empty)


def test_the_html_page_is_self_contained_and_escapes_the_log():
    page = as_html(build_report(ROWS, COUNTS))
    assert "<svg" in page and "<polyline" in page and "<rect" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "src=" not in page and "<link" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page  # the question, escaped
    assert "&lt;b&gt;admin&lt;/b&gt; console" in page and "<b>admin</b>" not in page
    assert "2026-W49" in page and "network.md" in page and "The server listens on port" in page
    # A week without answers between two with answers keeps its slot in the chart.
    later = answer(12, "2026-12-21T09:00:00Z", "Where is the fuse?", "declined")
    weeks = [w["week"] for w in chart_weeks(build_report([*ROWS, later], COUNTS)["by_week"])]
    assert weeks == ["2026-W49", "2026-W50", "2026-W51", "2026-W52"]


def test_the_text_report_is_readable_and_cannot_drive_the_terminal():
    out = as_text(build_report(ROWS, COUNTS))
    assert out.startswith("Field feedback: 11 answers from 2 files")
    assert f"     3  {FIRMWARE}" in out and f"also: {FIRMWARE_AGAIN}" in out
    assert "note: an update without the cable" in out and "2026-W50" in out
    assert "\x1b" not in out and "\\x1b[2J" in out  # the escape sequence shown, not run


def test_report_command_prints_text_json_and_writes_html(export_file, tmp_path):
    runner = CliRunner()
    done = runner.invoke(feedback_report, [str(export_file)])
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("Field feedback: 11 answers from 1 file (0 duplicates")
    assert "3 entries dropped on the devices" in done.stdout
    done = runner.invoke(feedback_report, [str(export_file), str(export_file), "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["totals"]["files"] == 2 and report["totals"]["duplicates"] == 11
    assert report["unanswered"][0]["question"] == FIRMWARE
    page = tmp_path / "report.html"
    done = runner.invoke(feedback_report, [str(export_file), "--html", str(page)])
    assert done.exit_code == 0, done.output
    assert done.stdout == "" and done.stderr.startswith(f"{page}: 11 answers")
    assert "<svg" in page.read_text() and not list(tmp_path.glob(".*tmp*"))
    done = runner.invoke(feedback_report, [str(export_file), "--json", "--html", str(page)])
    assert done.exit_code == 2 and "not both" in done.stderr


def test_report_command_refuses_a_file_whose_checksum_does_not_match(export_file):
    data = export_file.read_bytes()
    export_file.write_bytes(data.replace(b"flash", b"flask", 1))
    done = CliRunner().invoke(feedback_report, [str(export_file)])
    assert done.exit_code == 1, done.output
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    assert "checksum does not match" in lines[0] and str(export_file) in lines[0]
    assert done.stdout == "" and "Traceback" not in done.output
