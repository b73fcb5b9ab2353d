"""Fit the line ranker's weights (runtime/evidence.py, LINE_WEIGHTS) on FAQ questions.

    make ranker             # data (trainer/faq.py), a bundle of the answers, then this fit

For every FAQ question the candidates are retrieved from a bundle of the FAQ answers exactly as
`ask` retrieves them, every line gets the runtime's features (`line_features`), and a line is
a positive when it is part of that question's answer. A listwise softmax fit (numpy, L2) on the
features gives the weights; the pairs are split by document (one in five held out), and top-1
and top-3 line accuracy on the held-out questions are reported for the learned weights, the
shipped ones and the ranker before issue 18 (dense + coverage).

    .venv/bin/python -m trainer.ranker --bundle FAQ_BUNDLE --pairs data/faq/pairs.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

import numpy as np

OPENING = 2  # sentences at the start of an answer that count as the line that answers


def collect(bundle: str, pairs_path: str) -> list[dict]:
    from runtime.assistant import CANDIDATES, open_assistant
    from runtime.evidence import line_inputs, split_units
    from runtime.support import normalise

    a = open_assistant(bundle)
    rows = []
    pairs = [json.loads(line) for line in open(pairs_path, encoding="utf-8") if line.strip()]
    for n, pair in enumerate(pairs, 1):
        question = pair["question"]
        hits = a.retriever.search(question, max(a.top_k, CANDIDATES))
        units, features, _ = line_inputs(question, hits, a.retriever.embedder, a.retriever.store)
        if not units:
            continue
        answer = normalise(pair["answer"])
        # The answer's opening sentences answer the question; its later lines explain. A line
        # of the later part is neither right nor wrong (left out of the fit and of the count).
        opening = {normalise(u.text) for u in split_units(pair["answer"])[:OPENING]}
        inside = np.array([normalise(u.text) in answer and hits[u.hit].source == pair["source"]
                           for u in units])  # fmt: skip
        labels = inside & np.array([normalise(u.text) in opening for u in units])
        if not labels.any():
            continue  # the answer was not retrieved: nothing to rank
        keep = labels | ~inside
        held = int(hashlib.sha256(pair["source"].encode()).hexdigest(), 16) % 5 == 0
        rows.append({"features": features[keep], "labels": labels[keep], "held_out": held})
        if n % 50 == 0:
            print(f"features: {n}/{len(pairs)} questions", file=sys.stderr)
    return rows


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
    from runtime.evidence import FEATURES, LINE_WEIGHTS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True, help="A bundle exported from data/faq/docs.")
    ap.add_argument("--pairs", default="data/faq/pairs.jsonl")
    ap.add_argument("--save", help="Also write the collected features here (pickle).")
    args = ap.parse_args(argv)
    rows = collect(args.bundle, args.pairs)
    if args.save:
        import pickle

        with open(args.save, "wb") as f:
            pickle.dump(rows, f)
    train = [r for r in rows if not r["held_out"]]
    held = [r for r in rows if r["held_out"]]
    learned = fit(train)
    shipped = np.array([LINE_WEIGHTS[f] for f in FEATURES])
    before = np.array([1.0 if f in ("dense", "coverage") else 0.0 for f in FEATURES])
    report = {
        "pairs_used": len(rows), "train": len(train), "held_out": len(held),
        "learned": {f: round(float(w), 3) for f, w in zip(FEATURES, learned)},
        "held_out_accuracy": {"before (dense + coverage)": accuracy(held, before),
                              "shipped": accuracy(held, shipped), "learned": accuracy(held, learned)},
    }  # fmt: skip
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
