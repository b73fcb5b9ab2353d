"""Fit the line ranker's weights (runtime/ask/rank.py, LINE_WEIGHTS) on FAQ questions.

    make ranker             # data (trainer/ranker/faq.py), a bundle of the answers, then this fit

For every FAQ question the candidates are retrieved from a bundle of the FAQ answers exactly as
`ask` retrieves them, every line gets the runtime's features (`line_features`), and a line is
a positive when it is part of that question's answer. With `--examples BUNDLE`, the questions
of examples/train.jsonl join the training side (a line of the answer's source document holding
the answer's numbers and names is a positive). The FAQ pairs are split by document (one in five
held out). Reported: top-1 and top-3 line accuracy on the held-out questions for the shipped
weights, the ranker before issue 18 (dense + coverage) and a listwise softmax fit (numpy, L2) of
every weight; and a sweep of each single weight around the shipped ones on the training
questions (how `chunk_rank` was chosen).

    .venv/bin/python -m outpost.trainer.ranker.weights --bundle FAQ_BUNDLE --pairs data/faq/pairs.jsonl \
        --examples EXAMPLES_BUNDLE
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

import numpy as np

OPENING = 2  # sentences at the start of an answer that count as the line that answers


def _lines(a, question: str):
    from outpost.runtime.ask.assistant import CANDIDATES
    from outpost.runtime.ask.rank import line_inputs

    hits = a.retriever.search(question, max(a.top_k, CANDIDATES))
    units, features, _ = line_inputs(question, hits, a.retriever.embedder, a.retriever.store)
    return hits, units, features


def collect(bundle: str, pairs_path: str) -> list[dict]:
    from outpost.runtime.ask.assistant import open_assistant
    from outpost.runtime.ask.support import normalise
    from outpost.runtime.ask.units import split_units

    a = open_assistant(bundle)
    rows = []
    pairs = [json.loads(line) for line in open(pairs_path, encoding="utf-8") if line.strip()]
    for n, pair in enumerate(pairs, 1):
        hits, units, features = _lines(a, pair["question"])
        if not units:
            continue
        answer = normalise(pair["answer"])
        # The answer's opening sentences answer the question; its later lines explain. A line
        # of the later part is neither right nor wrong (left out of the fit and of the count).
        opening = {normalise(u.text) for u in split_units(pair["answer"])[:OPENING]}
        inside = np.array(
            [normalise(u.text) in answer and hits[u.hit].source == pair["source"] for u in units]
        )
        labels = inside & np.array([normalise(u.text) in opening for u in units])
        if not labels.any():
            continue  # the answer was not retrieved: nothing to rank
        keep = labels | ~inside
        held = int(hashlib.sha256(pair["source"].encode()).hexdigest(), 16) % 5 == 0
        rows.append({"features": features[keep], "labels": labels[keep], "held_out": held})
        if n % 50 == 0:
            print(f"features: {n}/{len(pairs)} questions", file=sys.stderr)
    return rows


def collect_examples(bundle: str, questions_path: str) -> list[dict]:
    """The answerable questions of examples/train.jsonl over a bundle of examples/docs: a line of
    the answer's source document that holds most of the answer's numbers (else names) answers."""
    from outpost.runtime.ask.assistant import open_assistant
    from outpost.runtime.ask.support import facts, normalise

    a = open_assistant(bundle)
    rows = []
    for line in open(questions_path, encoding="utf-8"):
        item = json.loads(line) if line.strip() else {}
        if not item.get("answer"):
            continue  # unanswerable: no line to find
        found = [normalise(f) for f in facts(item["answer"])]
        wanted = [f for f in found if any(c.isdigit() for c in f)] or found
        if not wanted:
            continue
        hits, units, features = _lines(a, item["question"])
        name = item["source_path"].rsplit("/", 1)[-1]
        labels = np.array(
            [
                hits[u.hit].source.endswith(name)
                and sum(f in normalise(u.text) for f in wanted) >= (len(wanted) + 1) // 2
                for u in units
            ]
        )
        if labels.any():
            rows.append({"features": features, "labels": labels, "held_out": False})
    return rows


def sweep(rows: list[dict], weights: np.ndarray, names: tuple[str, ...]) -> dict:
    """Top-1 on `rows` as each single weight moves around the given ones (the others fixed)."""
    steps = (-0.4, -0.2, -0.1, 0.0, 0.1, 0.2, 0.4)
    out = {}
    for i, name in enumerate(names):
        row = {}
        for d in steps:
            w = weights.copy()
            w[i] += d
            row[f"{w[i]:+.2f}"] = accuracy(rows, w)["top1"]
        out[name] = row
    return out


def fit(rows: list[dict], l2: float = 1e-3, steps: int = 400, lr: float = 0.5) -> np.ndarray:
    """Listwise: for each question a softmax over its lines' scores, maximising the probability
    of its right lines (what ranking needs, unlike a per-line classifier). Full-batch gradient
    descent on standardised features; returned on the raw features' scale, dense = 1."""
    X = np.concatenate([r["features"] for r in rows]).astype(np.float64)
    mean, scale = X.mean(0), X.std(0) + 1e-9
    lists = [((r["features"] - mean) / scale, r["labels"].astype(bool)) for r in rows]
    w = np.zeros(X.shape[1])
    w[0] = 1.0  # start from the dense cosine alone
    for _ in range(steps):
        grad = l2 * w
        for Z, y in lists:
            s = Z @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            q = p * y / max((p * y).sum(), 1e-12)  # the right lines, weighted by their share
            grad += Z.T @ (p - q) / len(lists)
        w -= lr * grad
    coef = w / scale
    return coef / coef[0]


def accuracy(rows: list[dict], weights: np.ndarray) -> dict:
    top1 = top3 = 0
    for r in rows:
        order = np.argsort(-(r["features"] @ weights))
        top1 += bool(r["labels"][order[0]])
        top3 += bool(r["labels"][order[:3]].any())
    n = max(len(rows), 1)
    return {"questions": len(rows), "top1": round(top1 / n, 3), "top3": round(top3 / n, 3)}


def main(argv: list[str] | None = None) -> None:
    from outpost.runtime.ask.rank import FEATURES, LINE_WEIGHTS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True, help="A bundle exported from data/faq/docs.")
    ap.add_argument("--pairs", default="data/faq/pairs.jsonl")
    ap.add_argument("--examples", help="A bundle of examples/docs: add examples/train.jsonl.")
    ap.add_argument("--examples-questions", default="examples/train.jsonl")
    ap.add_argument("--save", help="Also write the collected features here (pickle).")
    args = ap.parse_args(argv)
    rows = collect(args.bundle, args.pairs)
    if args.examples:
        rows += collect_examples(args.examples, args.examples_questions)
    if args.save:
        import pickle

        with open(args.save, "wb") as f:
            pickle.dump(rows, f)
    train = [r for r in rows if not r["held_out"]]
    held = [r for r in rows if r["held_out"]]
    learned = fit(train)
    shipped = np.array([LINE_WEIGHTS[f] for f in FEATURES])
    before = np.array([1.0 if f in ("dense", "coverage") else 0.0 for f in FEATURES])
    no_rank = np.where(np.array(FEATURES) == "chunk_rank", 0.0, shipped)
    report = {
        "pairs_used": len(rows),
        "train": len(train),
        "held_out": len(held),
        "learned": {f: round(float(w), 3) for f, w in zip(FEATURES, learned)},
        "held_out_accuracy": {
            "before (dense + coverage)": accuracy(held, before),
            "shipped without chunk_rank": accuracy(held, no_rank),
            "shipped": accuracy(held, shipped),
            "learned": accuracy(held, learned),
        },
        "train_top1_by_weight": sweep(train, shipped, FEATURES),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
