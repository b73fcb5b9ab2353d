"""The field report (report.py's `build_report`) as one self-contained HTML page for the
documentation writers: the numbers as tables, the weeks as an inline SVG chart."""

from __future__ import annotations

import datetime as dt
import html
import math

from outpost.export.field.report import grouping, percent, summary
from outpost.export.field.similar import text

CHART_SPAN = 260  # weeks (five years) the chart lays out one slot each, weeks without answers too

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


COUNTS_BY_DOCUMENT = ("answers", "rated", "helpful", "unhelpful")
COUNTS_BY_WEEK = ("answers", "declined", "rated", "helpful")


def _counts_table(
    rows: list[dict], label: str, key: str, counts: tuple, isolate: bool
) -> list[str]:
    """One table of counts per row (a document, a week) and the helpful share."""
    head = "".join(f'<th class="n">{c}</th>' for c in counts)
    out = [f'<table><tr><th>{label}</th>{head}<th class="n">helpful share</th></tr>']
    for r in rows:
        name = f"<bdi>{esc(r[key])}</bdi>" if isolate else esc(r[key])
        cells = "".join(f'<td class="n">{r[c]}</td>' for c in counts)
        out.append(
            f'<tr><td>{name}</td>{cells}<td class="n">{percent(r["helpful_share"])}</td></tr>'
        )
    out.append("</table>")
    return out


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
        out += _counts_table(report["by_document"], "document", "source", COUNTS_BY_DOCUMENT, True)
    out.append("<h2>By week</h2>")
    if report["by_week"]:
        out += _counts_table(report["by_week"], "week", "week", COUNTS_BY_WEEK, False)
    out.append("</body></html>")
    return "\n".join(out) + "\n"
