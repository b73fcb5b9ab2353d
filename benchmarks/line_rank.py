"""How often the line ranker puts a line that answers first, without generating.

    .venv/bin/python benchmarks/line_rank.py BUNDLE:QUESTIONS [BUNDLE:QUESTIONS ...] [--json]

For each answerable question: retrieve the candidates as `ask` does, rank their lines
(runtime/ask/rank.py) and find the first line holding every answer keyword (NFKC, case-blind),
alone ("line") or with its neighbours ("window", what the quote shows). Reports top-1 and
top-3 for both, whether any candidate line holds the answer at all ("reachable"), and the
ranking time per question.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from outpost.runtime.ask.assistant import CANDIDATES, open_assistant
from outpost.runtime.ask.evaluate import load_questions
from outpost.runtime.ask.rank import read
from outpost.runtime.ask.support import normalise


def window(units: list, j: int) -> str:
    """Line j with the lines on either side of it in its chunk."""
    same = [k for k in range(len(units)) if units[k].hit == units[j].hit]
    at = same.index(j)
    return " ".join(units[k].text for k in same[max(0, at - 1) : at + 2])


def ranks(bundle: str, questions: str) -> list[dict]:
    a = open_assistant(bundle)
    out = []
    for item in load_questions(questions):
        if not item["answerable"]:
            continue
        keys = [normalise(k) for k in item["answer_keywords"]]
        hits = a.retriever.search(item["question"], max(a.top_k, CANDIDATES))
        start = time.perf_counter()
        reading = read(
            item["question"], hits, a.retriever.embedder, a.retriever.store, a.windows, a.radius
        )
        took = time.perf_counter() - start
        order = sorted(range(len(reading.units)), key=lambda j: -reading.scores[j])
        units = reading.units

        line = next(
            (r for r, j in enumerate(order) if all(k in normalise(units[j].text) for k in keys)),
            None,
        )
        wide = next(
            (r for r, j in enumerate(order) if all(k in normalise(window(units, j)) for k in keys)),
            None,
        )
        out.append(
            {
                "id": item["id"],
                "line_rank": line,
                "window_rank": wide,
                "seconds": took,
                "top": units[order[0]].text[:120] if order else "",
            }
        )
    return out


def summary(rows: list[dict]) -> dict:
    def share(key, k):
        return round(sum(r[key] is not None and r[key] < k for r in rows) / len(rows), 3)

    return {
        "questions": len(rows),
        "line_top1": share("line_rank", 1),
        "line_top3": share("line_rank", 3),
        "window_top1": share("window_rank", 1),
        "window_top3": share("window_rank", 3),
        "reachable": share("window_rank", 10**9),
        "median_rank_s": round(statistics.median(r["seconds"] for r in rows), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("sets", nargs="+", help="BUNDLE:QUESTIONS pairs")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--rows", action="store_true", help="Print each question's ranks too.")
    args = ap.parse_args()
    results = {}
    for pair in args.sets:
        bundle, questions = pair.split(":", 1)
        rows = ranks(bundle, questions)
        results[pair] = {**summary(rows), **({"rows": rows} if args.rows else {})}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name, r in results.items():
        print(name, {k: v for k, v in r.items() if k != "rows"})
        for row in r.get("rows", []):
            print(
                f"  {row['id']:>8} line {row['line_rank']} window {row['window_rank']}  {row['top']!r}"
            )


if __name__ == "__main__":
    main()
