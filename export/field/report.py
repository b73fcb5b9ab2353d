"""The field report: what the manuals did not answer, and how well the answers did.

`build_report(rows, counts)` reads the rows of `exchange.merge` (answers with their verdict
joined in; docs/feedback.md has the keys) and returns a plain dict, which `as_text` prints for a
terminal and `as_html` lays out as one page for the documentation writers:

- `unanswered`: the gaps. Declines (unless someone confirmed the decline was right: the manuals
  are not meant to cover it) and answers marked unhelpful, grouped by similar question, most
  frequent first, with the notes people wrote ("What were you looking for?").
- `unhelpful_quotes`: quoted lines marked unhelpful, grouped by (source, heading, text).
- `by_document`: per quoted source, answers and verdicts; the most unhelpful first.
- `by_week`: per ISO week of the answer, answers, declines and verdicts (the chart's data).
- `totals`: the whole log, and what `merge` counted (files, duplicates, entries dropped on the
  devices to stay under the log's cap).

Similar questions. Identical questions (case and spacing aside) are one form; forms are taken
most asked first, and each joins the group whose first form (its representative) it is most
similar to, when similar enough, or starts a group. Comparing with the representative only, not
with every member, keeps a group from drifting one small step at a time.

- By words (no embedder): the Jaccard overlap of the two questions' content terms (the runtime's
  `terms`: stopwords and question words left out, stemmed in the question's language) at least
  WORD_OVERLAP, 0.5. Tried on written examples: "How do I flash the firmware over Bluetooth?"
  meets "Can I flash firmware via Bluetooth?" at 0.6, "flash firmware bluetooth" at 0.75 and
  "How do I update the firmware over Bluetooth?" at 0.6; "What is the warranty period?" meets
  "How long is the warranty?" at 0.5; while "How do I pair the controller over Bluetooth?"
  meets the flashing questions at 0.14-0.33. Short questions share few terms, so one term in
  two is already the same subject; below 0.5 the pairs were different requests.
- By meaning (`embed`, the bundle's embedder): the cosine of the two questions' vectors at least
  MEANING, 0.7. Measured with the default embedder (all-MiniLM-L6-v2, fp32) on 20 written
  questions (190 pairs, median 0.10): rewordings of one request scored 0.73-0.93 (the flashing
  questions above 0.77-0.90, the warranty pair 0.93, "reset the controller" and "where is the
  reset button" 0.84); different requests sharing words scored at most 0.52 (pairing vs
  flashing over Bluetooth). Between 0.53 and 0.65 lay both kinds (a default port asked two ways
  0.65, "guarantee" for "warranty" 0.60, a blank screen described two ways 0.53). 0.7 keeps the
  groups to one request each: a gap split into two rows costs a writer less than a gap hidden
  inside another group. Questions in a language the embedder was not trained on
  (`embed_languages`, the manifest's `embedder.languages`) are compared by words.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from outpost.runtime.ask.terms import terms
from outpost.runtime.errors import BundleError, OutpostError, one_line
from outpost.runtime.language.lexicon import Lexicon, lexicon

WORD_OVERLAP = 0.5  # Jaccard of content terms: one group (module docstring)
MEANING = 0.7  # cosine of the embedder's vectors: one group (module docstring)
OTHERS = 5  # other wordings listed under a group's representative question
TEXT_NOTES = 5  # notes printed per group in the text report (JSON and HTML have all)
TEXT_CLIP = 160  # characters of a question or quote in the text report
CHART_SPAN = 260  # weeks (five years) the chart lays out one slot each, weeks without answers too

Embed = Callable[[list[str]], np.ndarray]


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


# --- similar questions -------------------------------------------------------------------------


@dataclass
class Form:
    """One question as asked (case and spacing aside), and the rows that asked it."""

    text: str
    language: str
    rows: list[dict] = field(default_factory=list)


def question_forms(rows: list[dict]) -> list[Form]:
    """The distinct questions of `rows`, most asked first (then the earliest asked)."""
    forms: dict[str, Form] = {}
    for r in sorted(rows, key=lambda r: text(r.get("time"))):
        question = " ".join(text(r.get("question")).split())
        form = forms.setdefault(question.casefold(), Form(question, text(r.get("language"))))
        form.rows.append(r)
    return sorted(forms.values(), key=lambda f: -len(f.rows))  # stable: earliest first on ties


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def group_forms(
    forms: Sequence[Form],
    embed: Embed | None = None,
    embed_languages: Collection[str] | None = None,
) -> list[list[int]]:
    """Greedy grouping of `forms` (most asked first): each form joins the group whose first form
    it is most similar to, when the similarity reaches the threshold, or starts a new group.
    Returns the groups as indices into `forms`, each group's first form first."""
    lexicons: dict[str, Lexicon] = {}
    for f in forms:
        if f.language not in lexicons:
            lexicons[f.language] = lexicon(f.language)
    words = [terms(f.text, lexicons[f.language]) for f in forms]
    by_meaning = [
        embed is not None and (embed_languages is None or f.language in embed_languages)
        for f in forms
    ]
    vectors = np.zeros((len(forms), 0), dtype=np.float32)
    if embed is not None and any(by_meaning):
        chosen = [i for i, m in enumerate(by_meaning) if m]
        found = np.asarray(embed([forms[i].text for i in chosen]), dtype=np.float32)
        vectors = np.zeros((len(forms), found.shape[1]), dtype=np.float32)
        vectors[chosen] = found / np.maximum(np.linalg.norm(found, axis=1, keepdims=True), 1e-12)
    groups: list[list[int]] = []
    with_term: dict[str, list[int]] = {}  # a term -> the groups whose first form holds it
    meaning_groups: list[int] = []  # the groups whose first form is compared by meaning
    for i in range(len(forms)):
        # Each score is the similarity over its threshold: 1 or more joins.
        scores: dict[int, float] = {}
        for g in {g for t in words[i] for g in with_term.get(t, ())}:
            first = groups[g][0]
            if not (by_meaning[i] and by_meaning[first]):
                scores[g] = jaccard(words[i], words[first]) / WORD_OVERLAP
        if by_meaning[i] and meaning_groups:
            cosines = vectors[[groups[g][0] for g in meaning_groups]] @ vectors[i]
            scores.update(zip(meaning_groups, (float(c) / MEANING for c in cosines), strict=True))
        best = max(scores, key=lambda g: (scores[g], -g), default=None)
        if best is not None and scores[best] >= 1.0:
            groups[best].append(i)
            continue
        groups.append([i])
        for t in words[i]:
            with_term.setdefault(t, []).append(len(groups) - 1)
        if by_meaning[i]:
            meaning_groups.append(len(groups) - 1)
    return groups


def open_meaning(bundle: str | Path, threads: int = 0) -> tuple[Embed, list[str] | None]:
    """The bundle's embedder as `build_report`'s `embed`, and the languages it was trained on
    (None: any). BundleError when the folder is not a bundle or its embedder does not load."""
    from outpost.runtime.ask.embed import open_embedder
    from outpost.runtime.bundle.open import open_bundle

    opened = open_bundle(bundle)
    info = opened.manifest.embedder
    try:
        embedder = open_embedder(opened.path, info, threads)
    except OutpostError:
        raise
    except Exception as e:  # noqa: BLE001 - onnxruntime and tokenizers raise their own types
        raise BundleError(
            f"cannot load {opened.folder / info.file} ({type(e).__name__}: "
            f"{one_line(str(e))[:160]}); copy the bundle again, or leave out --bundle to group "
            "questions by words"
        ) from None
    return embedder.embed, info.languages


# --- text --------------------------------------------------------------------------------------


def text(value: object) -> str:
    """A value from the log as text ("" for null): the rows are what a device wrote."""
    return "" if value is None else str(value)


def distinct(values: Iterable[str]) -> list[str]:
    """The non-empty values, each once, in order."""
    return list(dict.fromkeys(v for v in values if v.strip()))


_BIDI = {0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def terminal_safe(value: str, clip: int = 0) -> str:
    """Log text as a terminal should show it: control characters (escape sequences, carriage
    returns, newlines) and bidirectional overrides escaped, so a question cannot forge output or
    drive the terminal; with `clip`, at most that many characters and an ellipsis."""
    if clip and len(value) > clip:
        value = value[: clip - 1] + "…"
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch) == "Cc" or ord(ch) in _BIDI
        else ch
        for ch in value
    )


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
    if report["by_document"]:
        lines += [
            "  " + line
            for line in table(
                ["source", "answers", "rated", "helpful", "unhelpful", "helpful share"],
                [
                    [
                        terminal_safe(d["source"], 60),
                        str(d["answers"]),
                        str(d["rated"]),
                        str(d["helpful"]),
                        str(d["unhelpful"]),
                        percent(d["helpful_share"]),
                    ]
                    for d in report["by_document"]
                ],
            )
        ]
    else:
        lines.append("  none")
    lines += ["", "By week"]
    if report["by_week"]:
        lines += [
            "  " + line
            for line in table(
                ["week", "answers", "declined", "rated", "helpful", "helpful share"],
                [
                    [
                        w["week"],
                        str(w["answers"]),
                        str(w["declined"]),
                        str(w["rated"]),
                        str(w["helpful"]),
                        percent(w["helpful_share"]),
                    ]
                    for w in report["by_week"]
                ],
            )
        ]
    else:
        lines.append("  none")
    return "\n".join(lines) + "\n"


# --- HTML --------------------------------------------------------------------------------------

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; color: #1d232a; margin: 2rem auto; max-width: 72rem;
       padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
p.summary { color: #4a5560; margin-top: 0; }
table { border-collapse: collapse; width: 100%; margin-top: .5rem; }
th, td { text-align: left; vertical-align: top; padding: .35rem .6rem;
         border-bottom: 1px solid #dde2e7; }
th { background: #f2f4f6; font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
ul { margin: .2rem 0; padding-left: 1.1rem; } li { margin: .1rem 0; }
.muted { color: #5f6b76; font-size: .9em; }
.note { font-style: italic; }
blockquote { margin: 0 0 .3rem; padding-left: .6rem; border-left: 3px solid #c9d1d9; }
svg { width: 100%; height: auto; max-width: 60rem; display: block; }
svg text { font: 12px system-ui, sans-serif; fill: #4a5560; }
"""

BAR = "#9db4cc"
LINE = "#c2571a"


def esc(value: object) -> str:
    """Any text from the log, escaped for HTML (questions and notes are what people typed)."""
    return html.escape(text(value), quote=True)


def listed(items: list[str], css: str = "") -> str:
    if not items:
        return ""
    cls = f' class="{css}"' if css else ""
    return "<ul>" + "".join(f"<li{cls}><bdi>{esc(i)}</bdi></li>" for i in items) + "</ul>"


def nice_ceiling(value: int) -> int:
    """The axis top: 1, 2 or 5 times a power of ten, at least `value` (and at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= value)


def chart_weeks(weeks: list[dict]) -> list[dict]:
    """The weeks the chart shows: those with answers, and the weeks without any between them
    (an empty slot, so a quiet month looks like one), unless they span over CHART_SPAN weeks (a
    device whose clock was reset writes 1970): then only the weeks with answers."""
    known = {w["week"]: w for w in weeks if w["week"] != "?"}
    if not known:
        return []
    monday = [dt.date.fromisocalendar(int(k[:4]), int(k[6:]), 1) for k in sorted(known)]
    span = (monday[-1] - monday[0]).days // 7 + 1
    if span > CHART_SPAN:
        return [known[k] for k in sorted(known)]
    empty = {"answers": 0, "declined": 0, "rated": 0, "helpful": 0, "unhelpful": 0}
    out = []
    for n in range(span):
        year, week, _ = (monday[0] + dt.timedelta(weeks=n)).isocalendar()
        key = f"{year}-W{week:02d}"
        out.append(known.get(key) or {"week": key, **empty, "helpful_share": None})
    return out


def week_chart(weeks: list[dict]) -> str:
    """An inline SVG: answers per week as bars (left axis), the helpful share as a line (right
    axis, 0-100 %); a week nobody rated breaks the line. Each week's numbers in a tooltip."""
    weeks = chart_weeks(weeks)
    width, height = 760, 260
    left, right, top, bottom = 48, 52, 28, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-labelledby="chart-title">',
        '<title id="chart-title">Answers and helpful share per week</title>',
    ]
    if not weeks:
        parts.append(f'<text x="{left}" y="{top + 20}">No answers yet.</text></svg>')
        return "".join(parts)
    most = nice_ceiling(max(w["answers"] for w in weeks))
    step = plot_w / len(weeks)
    bar = max(min(step * 0.6, 48), 1)
    for frac in (0, 0.5, 1):
        y = top + plot_h * (1 - frac)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e7eb"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{most * frac:g}</text>'
            f'<text x="{left + plot_w + 6}" y="{y + 4:.1f}">{100 * frac:.0f}%</text>'
        )
    label_every = max(1, math.ceil(72 / step))  # a label ("2026-W49") is about 60 px wide
    segments: list[list[tuple[float, float]]] = [[]]
    for n, w in enumerate(weeks):
        x = left + step * (n + 0.5)
        h = plot_h * w["answers"] / most
        tip = (
            f"{w['week']}: {w['answers']} answers, {w['declined']} declined, {w['rated']} rated, "
            f"{w['helpful']} helpful ({percent(w['helpful_share'])})"
        )
        parts.append(
            f'<rect x="{x - bar / 2:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" '
            f'height="{h:.1f}" fill="{BAR}"><title>{esc(tip)}</title></rect>'
        )
        if n % label_every == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{top + plot_h + 18}" text-anchor="middle">'
                f"{esc(w['week'])}</text>"
            )
        if w["helpful_share"] is None:
            segments.append([])
        else:
            segments[-1].append((x, top + plot_h * (1 - w["helpful_share"])))
    for points in segments:
        if len(points) > 1:
            coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(
                f'<polyline points="{coords}" fill="none" stroke="{LINE}" stroke-width="2.5"/>'
            )
        for x, y in points:
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{LINE}"/>')
    parts.append(
        f'<rect x="{left}" y="6" width="12" height="12" fill="{BAR}"/>'
        f'<text x="{left + 17}" y="16">answers (left axis)</text>'
        f'<line x1="{left + 170}" x2="{left + 190}" y1="12" y2="12" stroke="{LINE}" '
        'stroke-width="2.5"/>'
        f'<text x="{left + 196}" y="16">helpful share of the rated answers (right axis)</text>'
        "</svg>"
    )
    return "".join(parts)


def as_html(report: dict) -> str:
    """One self-contained page: no external assets, no scripts (its policy refuses both), every
    text from the log escaped."""
    t = report["totals"]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Outpost field report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Outpost field report</h1>",
        f'<p class="summary">{esc(summary(report))}</p>',
        "<h2>Answers per week</h2>",
        week_chart(report["by_week"]),
    ]
    out.append(
        f'<h2>What the manuals did not answer</h2><p class="muted">{t["gaps"]} questions '
        f"(declines nobody confirmed right, and answers marked unhelpful) in "
        f"{len(report['unanswered'])} groups, {esc(grouping(report))}; most frequent first.</p>"
    )
    if report["unanswered"]:
        out.append(
            '<table><tr><th class="n">asked</th><th>question, and other wordings</th>'
            "<th>what people were looking for</th><th>declined by</th><th>languages</th>"
            "<th>last asked</th></tr>"
        )
        for g in report["unanswered"]:
            more = g["wordings"] - len(g["others"]) - 1
            declined = ", ".join(f"{k} {n}" for k, n in g["declined_by"].items())
            if g["marked_unhelpful"]:
                declined += f"{'; ' if declined else ''}{g['marked_unhelpful']} marked unhelpful"
            out.append(
                f'<tr><td class="n">{g["count"]}</td>'
                f"<td><strong><bdi>{esc(g['question'])}</bdi></strong>"
                f"{listed(g['others'], 'muted')}"
                + (f'<span class="muted">and {more} other wordings</span>' if more > 0 else "")
                + f"</td><td>{listed(g['notes'], 'note')}</td><td>{esc(declined)}</td>"
                f"<td>{esc(', '.join(f'{k} {n}' for k, n in g['languages'].items()))}</td>"
                f'<td class="muted" title="{esc(g["last"])}">{esc(g["last"][:10])}</td></tr>'
            )
        out.append("</table>")
    out.append(
        '<h2>Quotes marked unhelpful</h2><p class="muted">The quoted line people said did not '
        "answer them, with what they asked; most frequent first.</p>"
    )
    if report["unhelpful_quotes"]:
        out.append(
            '<table><tr><th class="n">times</th><th>document and heading</th><th>quoted line</th>'
            "<th>asked</th><th>what people were looking for</th></tr>"
        )
        for q in report["unhelpful_quotes"]:
            out.append(
                f'<tr><td class="n">{q["count"]}</td><td><bdi>{esc(q["source"])}</bdi>'
                f'<div class="muted"><bdi>{esc(q["heading"])}</bdi></div></td>'
                f"<td><blockquote><bdi>{esc(q['text'])}</bdi></blockquote></td>"
                f"<td>{listed(q['questions'])}</td><td>{listed(q['notes'], 'note')}</td></tr>"
            )
        out.append("</table>")
    out.append(
        '<h2>By document</h2><p class="muted">Answers that quoted each document; the most '
        "marked unhelpful first.</p>"
    )
    if report["by_document"]:
        out.append(
            '<table><tr><th>document</th><th class="n">answers</th><th class="n">rated</th>'
            '<th class="n">helpful</th><th class="n">unhelpful</th>'
            '<th class="n">helpful share</th></tr>'
        )
        for d in report["by_document"]:
            out.append(
                f"<tr><td><bdi>{esc(d['source'])}</bdi></td>"
                + "".join(
                    f'<td class="n">{d[k]}</td>'
                    for k in ("answers", "rated", "helpful", "unhelpful")
                )
                + f'<td class="n">{percent(d["helpful_share"])}</td></tr>'
            )
        out.append("</table>")
    out.append("<h2>By week</h2>")
    if report["by_week"]:
        out.append(
            '<table><tr><th>week</th><th class="n">answers</th><th class="n">declined</th>'
            '<th class="n">rated</th><th class="n">helpful</th>'
            '<th class="n">helpful share</th></tr>'
        )
        for w in report["by_week"]:
            out.append(
                f"<tr><td>{esc(w['week'])}</td>"
                + "".join(
                    f'<td class="n">{w[k]}</td>'
                    for k in ("answers", "declined", "rated", "helpful")
                )
                + f'<td class="n">{percent(w["helpful_share"])}</td></tr>'
            )
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
