"""The usearch index (its dtype chosen by measured recall against exact search) and the
grounding threshold, calibrated on in-corpus questions (`pseudo_question`) and off-topic ones.
The chunk store beside the index is written by its one owner, runtime/bundle/store.py (`write_store`)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from outpost.export.documents.chunk import Chunk
from outpost.runtime.ask.retrieve import EXPANSION_SEARCH

DTYPES = ("i8", "f16", "f32")  # smallest first
MIN_RECALL = 0.99
RECALL_K = 10
WIDEST = 1024  # the widest graph search tried before exact search
TIE = 1e-5  # similarities this close to the k-th best are as near as it

# Questions no technical manual answers: the floor for the grounding threshold.
OFF_TOPIC = [
    "Who won the football world cup in 1998?",
    "What is a good recipe for chocolate cake?",
    "Who painted the Mona Lisa?",
    "What is the capital of Australia?",
    "How many moons does Jupiter have?",
    "Recommend a romantic movie for tonight.",
    "What is the meaning of life?",
    "Write a poem about the sea.",
    "Who is the current president of France?",
    "How do I make sourdough bread?",
    "What are the rules of cricket?",
    "When did the Roman Empire fall?",
    "What is the best way to learn French?",
    "How tall is Mount Everest?",
    "Tell me a joke about cats.",
    "What should I pack for a beach holiday?",
    "Which team won the NBA finals last year?",
    "How do I train my puppy to sit?",
    "What is the plot of Hamlet?",
    "Where can I buy cheap flights to Tokyo?",
]


def _new_index(ndim: int, dtype: str):
    from outpost.runtime.ask.retrieve import usearch_index

    return usearch_index()(ndim=ndim, metric="cos", dtype=dtype)


def _recall(
    index, vectors: np.ndarray, queries: np.ndarray, kth: np.ndarray, k: int, expansion: int
) -> float:
    """Share of the k found that are among the true k nearest. Ties count: a found vector as
    close as the k-th nearest is a right answer (duplicate chunks make the exact order of
    equals arbitrary, which made the floor unreachable for any search)."""
    index.expansion_search = expansion
    found = index.search(queries, k)
    got = np.asarray(found.keys).reshape(len(queries), -1)
    hits = 0
    for i, keys in enumerate(got):
        keys = keys[keys < len(vectors)]  # usearch pads missing results with a sentinel key
        hits += int(np.sum(vectors[keys.astype(np.int64)] @ queries[i] >= kth[i] - TIE))
    return round(hits / (len(queries) * k), 4)


def build_index(vectors: np.ndarray, queries: np.ndarray, path: Path, log) -> dict:
    """Pick the smallest dtype whose recall@10 against exact search is >= MIN_RECALL, searched
    exactly as the runtime searches (EXPANSION_SEARCH); if none reaches it, widen f32's search,
    and past WIDEST fall back to exact search. The choice is recorded for the runtime. Save it."""
    n = len(vectors)
    keys = np.arange(n, dtype=np.uint64)
    k = min(RECALL_K, n)
    kth = -np.sort(-(queries @ vectors.T), axis=1)[:, k - 1]  # the k-th best true similarity
    recalls: dict[str, float] = {}
    chosen, expansion, search = None, EXPANSION_SEARCH, "hnsw"
    for dtype in DTYPES:
        index = _new_index(vectors.shape[1], dtype)
        for start in range(0, n, 1024):
            index.add(keys[start : start + 1024], vectors[start : start + 1024])
            log(f"index {dtype}: {min(start + 1024, n)}/{n} vectors")
        recalls[dtype] = _recall(index, vectors, queries, kth, k, EXPANSION_SEARCH)
        if recalls[dtype] >= MIN_RECALL:
            chosen = dtype
            break
    if chosen is None:  # f32 is loaded: widen its search before giving up on the graph
        chosen, expansion = "f32", EXPANSION_SEARCH
        while expansion < WIDEST and recalls.get(f"f32@{expansion}", 0.0) < MIN_RECALL:
            expansion *= 2
            recalls[f"f32@{expansion}"] = _recall(index, vectors, queries, kth, k, expansion)
            log(
                f"index f32: recall@{k} {recalls[f'f32@{expansion}']} searching {expansion} candidates"
            )
        if recalls[f"f32@{expansion}"] < MIN_RECALL:
            search, expansion = "exact", EXPANSION_SEARCH
            log(f"index: no graph search reaches recall {MIN_RECALL}; the runtime searches exactly")
    index.save(str(path))
    return {
        "file": path.name,
        "metric": "cos",
        "dtype": chosen,
        "count": n,
        "ndim": int(vectors.shape[1]),
        "recall_at_10": recalls,
        "min_recall": MIN_RECALL,
        "expansion_search": expansion,
        "search": search,
    }


def pseudo_question(chunk: Chunk) -> str:
    """A query-like string from a chunk: its first sentence, without the heading."""
    first = re.split(r"(?<=[.!?])\s+", chunk.text.strip(), maxsplit=1)[0]
    return " ".join(first.split()[:24])


def calibrate_threshold(best_in: np.ndarray, best_off: np.ndarray) -> tuple[float, dict]:
    """Threshold between off-topic and in-corpus best scores.

    Sits above nearly all off-topic questions (their 95th percentile + a margin) but never above
    the 5th percentile of in-corpus questions, so real questions are not refused by retrieval.
    Retrieval alone cannot catch in-domain questions the documents don't answer; the runtime's
    later declines (`name`, `evidence`, the model's own: runtime/ask/assistant.py) handle those.
    """
    off_hi = float(np.percentile(best_off, 95)) + 0.03
    in_lo = float(np.percentile(best_in, 5))
    threshold = round(min(off_hi, in_lo), 4)
    stats = {
        "off_topic_best": {
            "max": round(float(best_off.max()), 4),
            "p95": round(float(np.percentile(best_off, 95)), 4),
        },
        "in_corpus_best": {
            "min": round(float(best_in.min()), 4),
            "p5": round(in_lo, 4),
            "median": round(float(np.median(best_in)), 4),
        },
        "off_topic_questions": len(best_off),
        "in_corpus_questions": len(best_in),
    }
    return threshold, stats
