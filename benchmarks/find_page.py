"""Where the answer is lost in a big manual: recall at each stage, without generating.

    .venv/bin/python benchmarks/find_page.py BUNDLE:QUESTIONS [BUNDLE:QUESTIONS ...] [--json]

For each answerable question, as `ask` finds and ranks (runtime/ask/assistant.py `_search`, rank.py `read`):
- retrieval: the rank of the first retrieved chunk that answers: from the question's
  `source_path` (or an `also_in` file) and holding every answer keyword (NFKC, case-blind);
  recall at 4 (the passages), at the line ranker's candidates, and deeper;
- lines: whether the first-ranked line (with the neighbours its quote shows) holds every
  keyword, with the bundle's learned ranker and with the features alone;
- the first quote's length, and the time to rank lines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from outpost.runtime.ask.assistant import CANDIDATES, open_assistant
from outpost.runtime.ask.evaluate import load_questions, source_matches
from outpost.runtime.ask.quote import quotes
from outpost.runtime.ask.rank import read
from outpost.runtime.ask.support import normalise
from outpost.runtime.config import AskConfig

DEPTHS = (4, 8, 16, 24, 32, 64)


def _answers(hit, item: dict, keys: list[str]) -> bool:
    files = [item.get("source_path"), *(item.get("also_in") or [])]
    text = normalise(f"{hit.heading} {hit.text}")
    return any(source_matches(hit.source, f) for f in files if f) and all(k in text for k in keys)


def stages(bundle: str, questions: str, candidates: int = CANDIDATES) -> list[dict]:
    a = open_assistant(bundle, AskConfig())
    rows = []
    for item in load_questions(questions):
        if not item["answerable"]:
            continue
        keys = [normalise(k) for k in item["answer_keywords"]]
        q = item["question"]
        deep = a.retriever.search(q, max(DEPTHS))
        page = next((r for r, h in enumerate(deep) if _answers(h, item, keys)), None)
        hits = a.retriever.search(q, max(a.top_k, candidates))
        row = {"id": item["id"], "page_rank": page}
        for name, reranker in (("learned", a.reranker), ("features", None)):
            if name == "learned" and reranker is None:
                continue
            start = time.perf_counter()
            reading = read(
                q,
                hits,
                a.retriever.embedder,
                a.retriever.store,
                a.windows,
                a.radius,
                reranker=reranker,
            )
            took = time.perf_counter() - start
            shown = quotes(reading, hits, 1, q)
            first = normalise(shown[0].text) if shown else ""
            row[name] = {
                "first_quote_right": bool(shown) and all(k in first for k in keys),
                "quote_chars": len(shown[0].text) if shown else 0,
                "seconds": took,
                "quote": shown[0].text[:160] if shown else "",
                "best_logit": reading.best_logit,
            }
        rows.append(row)
    return rows


def summary(rows: list[dict]) -> dict:
    n = len(rows)
    out = {"questions": n}
    for d in DEPTHS:
        out[f"page_at_{d}"] = round(
            sum(r["page_rank"] is not None and r["page_rank"] < d for r in rows) / n, 3
        )
    for name in ("learned", "features"):
        got = [r[name] for r in rows if name in r]
        if got:
            out[f"{name}_first_quote_right"] = round(
                sum(g["first_quote_right"] for g in got) / n, 3
            )
            out[f"{name}_median_quote_chars"] = statistics.median(g["quote_chars"] for g in got)
            out[f"{name}_median_rank_s"] = round(statistics.median(g["seconds"] for g in got), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("sets", nargs="+", help="BUNDLE:QUESTIONS pairs")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--rows", action="store_true", help="Print each question's stages too.")
    ap.add_argument(
        "--candidates", type=int, default=CANDIDATES, help="Chunks the lines come from."
    )
    args = ap.parse_args()
    results = {}
    for pair in args.sets:
        bundle, questions = pair.split(":", 1)
        rows = stages(bundle, questions, args.candidates)
        results[pair] = {**summary(rows), **({"rows": rows} if args.rows else {})}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name, r in results.items():
        print(name, json.dumps({k: v for k, v in r.items() if k != "rows"}))
        for row in r.get("rows", []):
            print(
                f"  {row['id']:>10} page {row['page_rank']}",
                json.dumps({k: v for k, v in row.items() if k not in ("id", "page_rank")})[:400],
            )


if __name__ == "__main__":
    main()
