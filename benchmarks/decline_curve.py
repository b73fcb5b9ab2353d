"""The decline trade-off: declines of unanswerable questions against false declines of
answerable ones, across evidence thresholds (runtime/ask/rank.py), without generating.

    .venv/bin/python benchmarks/decline_curve.py BUNDLE:QUESTIONS [BUNDLE:QUESTIONS ...] \
        [--png docs/img/decline-curve.png]

Prints the table for each set and for all together; draws one curve per set.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from outpost.runtime.ask.assistant import CANDIDATES, open_assistant
from outpost.runtime.ask.evaluate import load_questions
from outpost.runtime.ask.rank import read

THRESHOLDS = np.round(np.arange(0.30, 0.81, 0.05), 2)


def scores(bundle: str, questions: str) -> list[tuple[bool, float]]:
    a = open_assistant(bundle)
    out = []
    for item in load_questions(questions):
        hits = a.retriever.search(item["question"], max(a.top_k, CANDIDATES))
        reading = read(
            item["question"], hits, a.retriever.embedder, a.retriever.store, a.windows, a.radius
        )
        out.append((item["answerable"], reading.answerability))
    return out


def curve(rows: list[tuple[bool, float]]) -> list[tuple[float, float, float]]:
    pos = [s for answerable, s in rows if answerable]
    neg = [s for answerable, s in rows if not answerable]
    return [
        (float(t), float(np.mean([s < t for s in neg])), float(np.mean([s < t for s in pos])))
        for t in THRESHOLDS
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("sets", nargs="+", help="BUNDLE:QUESTIONS pairs")
    ap.add_argument("--png", help="Write the plot here.")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = {}
    everything = []
    for pair in args.sets:
        bundle, questions = pair.split(":", 1)
        rows = scores(bundle, questions)
        everything += rows
        results[questions] = curve(rows)
    results["all"] = curve(everything)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name, points in results.items():
            print(
                f"\n{name}\n| threshold | unanswerable declined | answerable declined |\n|---|---|---|"
            )
            for t, d, f in points:
                print(f"| {t:.2f} | {d:.2f} | {f:.2f} |")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 4))
        for name, points in results.items():
            ax.plot(
                [p[2] for p in points],
                [p[1] for p in points],
                "o-",
                label=name.split("/")[-2] if "/" in name else name,
            )
            for t, d, f in points[::2]:
                ax.annotate(
                    f"{t:.2f}", (f, d), fontsize=7, xytext=(3, -8), textcoords="offset points"
                )
        ax.set_xlabel("false declines (answerable questions declined)")
        ax.set_ylabel("unanswerable questions declined")
        ax.set_title("Evidence threshold trade-off")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)


if __name__ == "__main__":
    main()
