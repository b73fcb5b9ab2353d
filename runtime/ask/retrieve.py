"""Find the passages for a question: dense search (usearch) fused with keyword search (SQLite FTS5).

Dense search finds paraphrases; keyword search finds exact names (commands, part numbers,
error codes) that a small embedder blurs. Reciprocal-rank fusion merges the two lists. A
question in a language the embedder was not trained on (MiniLM reads English) is found by its
words: keyword results come first and dense results only fill up (docs/quality.md,
"Languages").
The dense cosine of the best passage decides grounding: below the bundle's threshold the
documents are taken not to cover the question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from outpost.runtime.bundle.store import ChunkStore
from outpost.runtime.language.lexicon import ENGLISH_STOPWORDS, Lexicon
from outpost.runtime.protocols import TextEmbedder

if TYPE_CHECKING:
    from usearch.index import Index

    from outpost.runtime.ask.question import Question

RRF_K = 60


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    score: float  # dense cosine similarity to the question
    source: str
    heading: str
    text: str


def keyword_terms(question: str, lex: Lexicon | None = None) -> list[str]:
    """The words keyword search looks for: the question's, lower-cased, stopwords left out
    (names with dots, dashes and slashes kept whole: `E-305`, `/etc/gammurc`). In languages
    other than English the question words are left out too. Words are searched as written:
    searching Snowball stems as prefixes (`filt*`) found more, and ranked the right line first
    less often, on both the Norwegian and the Dutch set (docs/quality.md, "Languages")."""
    found = re.findall(r"[\w][\w.\-/]*[\w]|\w", question.lower())
    if lex is None or lex.language == "en":
        return [t for t in found if t not in ENGLISH_STOPWORDS]
    return [t for t in found if t not in lex.stopwords and t not in lex.question_words]


def usearch_index() -> type[Index]:
    """usearch's Index class, loaded after onnxruntime's library: usearch 2.26.6's extension
    carries its own libstdc++ and exports its locale symbols process-wide (GNU unique), so
    onnxruntime 1.31.1's library loaded after it crashes the process (a segfault in libstdc++)
    as it starts, through onnx_session as through `import onnxruntime`."""
    from outpost.runtime.ask.onnx_session import load

    load()  # before usearch is imported, see above
    from usearch.index import Index

    return Index


# usearch searches 64 candidates by default: recall@10 0.96 at 60k chunks; 128 gives 0.98
# at 0.35 ms per query (f16), benchmarks/retrieval_scale.py, docs/benchmarks.md.
EXPANSION_SEARCH = 128


class Retriever:
    def __init__(
        self,
        index_path: Path,
        store: ChunkStore | Path,
        ndim: int,
        embedder: TextEmbedder,
        expansion: int = EXPANSION_SEARCH,
        exact: bool = False,
    ):
        Index = usearch_index()

        index = Index.restore(str(index_path), view=True)
        if index is None or index.ndim != ndim:
            raise ValueError(f"index {index_path} does not hold {ndim}-dimensional vectors")
        # What the export's recall check used. (usearch 2.26 defines this property's setter apart
        # from its getter, with another property between, so mypy takes it for read-only.)
        index.expansion_search = expansion  # type: ignore[misc]
        self.index = index
        self.exact = exact
        self.store = store if isinstance(store, ChunkStore) else ChunkStore(store)
        self.embedder = embedder

    def search(self, question: Question | str, k: int, hybrid: bool = True) -> list[Hit]:
        """The k best chunks for the question's query, dense and keyword results fused; chunks
        the question's `keep` rejects (another language in a bundle of several) are dropped when
        any candidate is kept. `dense_weight` 0 (an embedder that does not read the question's
        language): keyword results first, dense results only fill up. A plain string is searched
        as an English question."""
        if isinstance(question, str):
            text, keywords, keep, dense_weight = question, keyword_terms(question), None, 1.0
        else:
            text, keywords = question.query, list(question.keywords)
            keep, dense_weight = question.keep, question.dense_weight
        query = self.embedder.embed([text])[0]
        pool = max(4 * k, 20)
        found = self.index.search(query, min(pool, len(self.index)), exact=self.exact)
        dense_ids = [int(x) for x in found.keys]
        dense_score = {int(key): 1.0 - float(d) for key, d in zip(found.keys, found.distances)}
        fused: dict[int, float] = {}
        for rank, cid in enumerate(dense_ids):
            fused[cid] = fused.get(cid, 0.0) + dense_weight / (RRF_K + rank)
        if hybrid:
            found_kw = self.store.keyword_search(keywords, pool)
            for rank, cid in enumerate(found_kw):
                fused[cid] = fused.get(cid, 0.0) + 1.0 / (RRF_K + rank)
        ranked = sorted(fused, key=lambda c: -fused[c])
        if keep is not None:
            ranked = [c for c in ranked if keep(c)] or ranked
        best = ranked[:k]
        missing = [c for c in best if c not in dense_score]
        if missing:
            vectors = np.asarray(self.index.get(missing), dtype=np.float32).reshape(
                len(missing), -1
            )
            norms = np.linalg.norm(vectors, axis=1) + 1e-12
            for cid, v, n in zip(missing, vectors, norms):
                dense_score[cid] = float(v @ query / n)
        rows = self.store.get(best)
        return [Hit(c, dense_score[c], *rows[c]) for c in best if c in rows]

    def best_score(self, question: str) -> float:
        query = self.embedder.embed([question])[0]
        found = self.index.search(query, 1, exact=self.exact)
        return 1.0 - float(found.distances[0]) if len(found.keys) else 0.0
