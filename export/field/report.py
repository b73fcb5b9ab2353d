"""The field report: what the manuals did not answer, and how well the answers did.

`build_report(rows, counts)` reads the rows of `exchange.merge` (answers with their verdict
joined in; docs/feedback.md has the keys) and returns a plain dict, which `as_text` prints for a
terminal and `as_html` (html.py) lays out as one page for the documentation writers:

- `unanswered`: the gaps. Declines (unless someone confirmed the decline was right: the manuals
  are not meant to cover it) and answers marked unhelpful, grouped by similar question, most
  frequent first, with the notes people wrote ("What were you looking for?").
- `unhelpful_quotes`: quoted lines marked unhelpful, grouped by (source, heading, text).
- `by_document`: per quoted source, answers and verdicts; the most unhelpful first.
- `by_week`: per ISO week of the answer, answers, declines and verdicts (the chart's data).
- `totals`: the whole log, and what `merge` counted (files, duplicates, entries dropped on the
  devices to stay under the log's cap).

Similar questions are grouped as similar.py says: by shared words, or by meaning with the
bundle's embedder (`open_meaning`).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Collection, Iterable

from outpost.export.field.similar import (
    MEANING,
    WORD_OVERLAP,
    Embed,
    group_forms,
    question_forms,
    text,
)

OTHERS = 5  # other wordings listed under a group's representative question
TEXT_NOTES = 5  # notes printed per group in the text report (JSON and HTML have all)
TEXT_CLIP = 160  # characters of a question or quote in the text report


# --- the report --------------------------------------------------------------------------------


def build_report(
    rows: list[dict],
    counts: dict,
    embed: Embed | None = None,
    embed_languages: Collection[str] | None = None,
) -> dict:
    """The report of merged rows (`exchange.merge`'s rows and counts). With `embed` (texts ->
    unit vectors) questions are grouped by meaning, by shared words otherwise; questions in a
    language outside `embed_languages` (None: any) by words either way."""
    gaps = [r for r in rows if is_gap(r)]
    return {
        "grouping": (
            {"by": "meaning", "cosine": MEANING}
            if embed is not None
            else {"by": "words", "jaccard": WORD_OVERLAP}
        ),
        "totals": totals(rows, counts),
        "unanswered": unanswered(gaps, embed, embed_languages),
        "unhelpful_quotes": unhelpful_quotes(rows),
        "by_document": by_document(rows),
        "by_week": by_week(rows),
    }


def is_gap(row: dict) -> bool:
    """What the manuals did not answer: a decline nobody confirmed right, or an answer marked
    unhelpful (a decline marked unhelpful too: an answer was expected)."""
    helpful = row.get("helpful")
    return helpful is False or (row.get("mode") == "declined" and helpful is not True)


def totals(rows: list[dict], counts: dict) -> dict:
    verdicts = [r.get("helpful") for r in rows]
    return {
        "answers": len(rows),
        "rated": sum(v is not None for v in verdicts),
        "helpful": sum(v is True for v in verdicts),
        "unhelpful": sum(v is False for v in verdicts),
        "declined": sum(r.get("mode") == "declined" for r in rows),
        "gaps": sum(map(is_gap, rows)),
        "files": int(counts.get("files", 0)),
        "duplicates": int(counts.get("duplicates", 0)),
        "dropped": int(counts.get("dropped", 0)),
    }


def share(helpful: int, rated: int) -> float | None:
    """The helpful share of the rated answers, None when none was rated."""
    return round(helpful / rated, 4) if rated else None


def unanswered(
    gaps: list[dict], embed: Embed | None = None, embed_languages: Collection[str] | None = None
) -> list[dict]:
    """The gap rows grouped by similar question, most frequent first."""
    forms = question_forms(gaps)
    groups = []
    for members in group_forms(forms, embed, embed_languages):
        rows = [r for i in members for r in forms[i].rows]
        notes = distinct(text(r.get("note")) for r in rows)
        groups.append(
            {
                "question": forms[members[0]].text,
                "count": len(rows),
                "others": [forms[i].text for i in members[1:][:OTHERS]],
                "wordings": len(members),
                "notes": notes,
                "languages": dict(Counter(text(r.get("language")) or "?" for r in rows)),
                "declined_by": dict(
                    Counter(
                        text(r.get("declined_by")) or "?"
                        for r in rows
                        if r.get("mode") == "declined"
                    )
                ),
                "marked_unhelpful": sum(r.get("helpful") is False for r in rows),
                "follow_ups": sum(r.get("follow_up") is True for r in rows),
                "last": max(text(r.get("time")) for r in rows),
            }
        )
    # Stable: equal counts keep the order of their representatives (most asked, then earliest).
    return sorted(groups, key=lambda g: -g["count"])


def unhelpful_quotes(rows: list[dict]) -> list[dict]:
    """Quotes marked unhelpful, grouped by (source, heading, text), most frequent first."""
    grouped: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        quote = r.get("quote")
        if r.get("helpful") is False and isinstance(quote, dict):
            key = (text(quote.get("source")), text(quote.get("heading")), text(quote.get("text")))
            grouped.setdefault(key, []).append(r)
    out = []
    for (source, heading, quoted), members in grouped.items():
        forms = question_forms(members)
        out.append(
            {
                "source": source,
                "heading": heading,
                "text": quoted,
                "count": len(members),
                "questions": [f.text for f in forms[:OTHERS]],
                "wordings": len(forms),
                "notes": distinct(text(r.get("note")) for r in members),
            }
        )
    return sorted(out, key=lambda q: -q["count"])


def by_document(rows: list[dict]) -> list[dict]:
    """Per quoted source: answers, verdicts and the helpful share; the most unhelpful first."""
    docs: dict[str, dict] = {}
    for r in rows:
        quote = r.get("quote")
        if not isinstance(quote, dict):
            continue
        source = text(quote.get("source")) or "?"
        d = docs.setdefault(
            source, {"source": source, "answers": 0, "rated": 0, "helpful": 0, "unhelpful": 0}
        )
        d["answers"] += 1
        d["rated"] += r.get("helpful") is not None
        d["helpful"] += r.get("helpful") is True
        d["unhelpful"] += r.get("helpful") is False
    for d in docs.values():
        d["helpful_share"] = share(d["helpful"], d["rated"])
    return sorted(docs.values(), key=lambda d: (-d["unhelpful"], -d["answers"], d["source"]))


def by_week(rows: list[dict]) -> list[dict]:
    """Per ISO week of the answer's time ("2026-W49"), oldest first; a time that cannot be read
    (a device whose clock was never set writes a real time, only a wrong one) is week "?"."""
    weeks: dict[str, dict] = {}
    for r in rows:
        week = iso_week(text(r.get("time")))
        w = weeks.setdefault(
            week,
            {"week": week, "answers": 0, "declined": 0, "rated": 0, "helpful": 0, "unhelpful": 0},
        )
        w["answers"] += 1
        w["declined"] += r.get("mode") == "declined"
        w["rated"] += r.get("helpful") is not None
        w["helpful"] += r.get("helpful") is True
        w["unhelpful"] += r.get("helpful") is False
    for w in weeks.values():
        w["helpful_share"] = share(w["helpful"], w["rated"])
    return sorted(weeks.values(), key=lambda w: (w["week"] == "?", w["week"]))


def iso_week(time: str) -> str:
    try:
        year, week, _ = dt.datetime.strptime(time, "%Y-%m-%dT%H:%M:%SZ").isocalendar()
    except ValueError:
        return "?"
    return f"{year}-W{week:02d}"


# --- text --------------------------------------------------------------------------------------


def distinct(values: Iterable[str]) -> list[str]:
    """The non-empty values, each once, in order."""
    return list(dict.fromkeys(v for v in values if v.strip()))


def terminal_safe(value: str, clip: int = 0) -> str:
    """Log text as a terminal should show it (the CLI's `safe`: control characters and
    bidirectional overrides escaped, so a question cannot forge output or drive the terminal);
    with `clip`, at most that many characters and an ellipsis."""
    from outpost.cli import safe

    if clip and len(value) > clip:
        value = value[: clip - 1] + "…"
    return safe(value)


def _counts_lines(rows: list[dict], key: str, counts: tuple, clip: int = 0) -> list[str]:
    """A table of counts per row (a document, a week) and the helpful share, or "none"."""
    if not rows:
        return ["  none"]
    cells = [
        [
            terminal_safe(str(r[key]), clip),
            *(str(r[c]) for c in counts),
            percent(r["helpful_share"]),
        ]
        for r in rows
    ]
    return ["  " + line for line in table([key, *counts, "helpful share"], cells)]


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def counted(counts: dict) -> str:
    """{"threshold": 3, "evidence": 1} -> "threshold 3, evidence 1"."""
    pairs = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{terminal_safe(str(k))} {n}" for k, n in pairs)


def many(n: int, word: str, words: str = "") -> str:
    """3, "file" -> "3 files"; 1, "entry", "entries" -> "1 entry"."""
    return f"{n} {word if n == 1 else words or word + 's'}"


def summary(report: dict) -> str:
    t = report["totals"]
    return (
        f"{many(t['answers'], 'answer')} from {many(t['files'], 'file')} "
        f"({many(t['duplicates'], 'duplicate')} left out, "
        f"{many(t['dropped'], 'entry', 'entries')} dropped on the devices); {t['rated']} rated: "
        f"{t['helpful']} helpful ({percent(share(t['helpful'], t['rated']))}), "
        f"{t['unhelpful']} not; {t['declined']} declined"
    )


def grouping(report: dict) -> str:
    g = report["grouping"]
    if g["by"] == "meaning":
        return f"grouped by meaning: cosine >= {g['cosine']}"
    return f"grouped by shared words: Jaccard >= {g['jaccard']}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell; the first left-aligned, the others right-aligned."""
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    return [
        "  ".join(
            cell.ljust(widths[c]) if c == 0 else cell.rjust(widths[c]) for c, cell in enumerate(r)
        ).rstrip()
        for r in [header, *rows]
    ]


def as_text(report: dict) -> str:
    """The report for a terminal."""
    lines = [f"Field feedback: {summary(report)}", ""]
    gaps = report["unanswered"]
    lines.append(
        f"What the manuals did not answer: {report['totals']['gaps']} questions in "
        f"{len(gaps)} groups ({grouping(report)})"
    )
    for g in gaps:
        lines.append(f"  {g['count']:>4}  {terminal_safe(g['question'], TEXT_CLIP)}")
        for other in g["others"]:
            lines.append(f"        also: {terminal_safe(other, TEXT_CLIP)}")
        if g["wordings"] > len(g["others"]) + 1:
            lines.append(f"        and {g['wordings'] - len(g['others']) - 1} other wordings")
        for note in g["notes"][:TEXT_NOTES]:
            lines.append(f"        note: {terminal_safe(note, TEXT_CLIP)}")
        if len(g["notes"]) > TEXT_NOTES:
            lines.append(f"        and {len(g['notes']) - TEXT_NOTES} more notes")
        details = [f"languages {counted(g['languages'])}"]
        if g["declined_by"]:
            details.append(f"declined by {counted(g['declined_by'])}")
        if g["marked_unhelpful"]:
            details.append(f"{g['marked_unhelpful']} marked unhelpful")
        lines.append(f"        ({'; '.join(details)}; last {terminal_safe(g['last'])})")
    if not gaps:
        lines.append("  none")
    lines += ["", f"Quotes marked unhelpful: {len(report['unhelpful_quotes'])}"]
    for q in report["unhelpful_quotes"]:
        where = " > ".join(terminal_safe(p) for p in (q["source"], q["heading"]) if p)
        lines.append(f"  {q['count']:>4}  {where}")
        lines.append(f'        "{terminal_safe(q["text"], TEXT_CLIP)}"')
        for question in q["questions"]:
            lines.append(f"        asked: {terminal_safe(question, TEXT_CLIP)}")
        for note in q["notes"][:TEXT_NOTES]:
            lines.append(f"        note: {terminal_safe(note, TEXT_CLIP)}")
        if len(q["notes"]) > TEXT_NOTES:
            lines.append(f"        and {len(q['notes']) - TEXT_NOTES} more notes")
    lines += ["", "By document (answers that quoted it)"]
    lines += _counts_lines(
        report["by_document"], "source", ("answers", "rated", "helpful", "unhelpful"), 60
    )
    lines += ["", "By week"]
    lines += _counts_lines(report["by_week"], "week", ("answers", "declined", "rated", "helpful"))
    return "\n".join(lines) + "\n"
