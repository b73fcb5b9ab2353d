"""Find the passages for a question: dense search (usearch) fused with keyword search (SQLite FTS5).

Dense search finds paraphrases; keyword search finds exact names (commands, part numbers,
error codes) that a small embedder blurs. Reciprocal-rank fusion merges the two lists.
The dense cosine of the best passage decides grounding: below the bundle's threshold the
documents are taken not to cover the question.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from outpost.runtime.embed import Embedder

RRF_K = 60
STOPWORDS = frozenset(
    "a an and are as at be by can do does for from how i if in is it of on or should "
    "that the this to was what when where which who why will with you your my me we "
    "there their then than into about after before any all also has have had not no".split()
)


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    score: float  # dense cosine similarity to the question
    source: str
    heading: str
    text: str


# The chunk store's schema, written by the export (export/index.py) and the only one read here.
STORE_SCHEMA = (
    "CREATE TABLE chunks (id INTEGER PRIMARY KEY, source TEXT NOT NULL, heading TEXT NOT NULL,"
    " start INTEGER NOT NULL, end INTEGER NOT NULL, text TEXT NOT NULL)",
    "CREATE VIRTUAL TABLE chunks_fts USING fts5(text, heading, content='chunks',"
    " content_rowid='id', tokenize=\"unicode61 tokenchars '_-'\")",
)
QUERY_SECONDS = 5.0  # no query on a real store takes a tenth of this; a hostile one is stopped


def store_uri(path: Path) -> str:
    """A read-only, immutable SQLite URI for exactly this file: every character of the path
    quoted, so `%`, `#`, `?` in folder names stay part of the name."""
    from urllib.parse import quote

    return f"file:{quote(str(Path(path).absolute()), safe='/')}?mode=ro&immutable=1"


@functools.cache
def expected_schema() -> frozenset:
    db = sqlite3.connect(":memory:")
    for statement in STORE_SCHEMA:
        db.execute(statement)
    rows = frozenset(db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))
    db.close()
    return rows


class ChunkStore:
    """SQLite chunk store: one row per chunk, plus an FTS5 table over text and heading.

    Opened read-only and immutable, with `trusted_schema` off; it must hold exactly the tables
    the export writes (no view, trigger or other object), and every query is stopped after
    QUERY_SECONDS, so a hostile store is refused or stopped, never run."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(store_uri(path), uri=True, check_same_thread=False)
        self._deadline = 0.0
        self.db.set_progress_handler(self._over_time, 10_000)
        self.db.execute("PRAGMA trusted_schema = OFF")
        self.db.execute("PRAGMA query_only = ON")
        found = frozenset(self._query("SELECT type, name, tbl_name, sql FROM sqlite_master"))
        foreign = sorted(f"{kind} {name!r}" for kind, name, _, _ in found - expected_schema())
        missing = sorted(f"{kind} {name!r}" for kind, name, _, _ in expected_schema() - found)
        if foreign or missing:
            self.db.close()
            what = "holds " + ", ".join(foreign) if foreign else "lacks " + ", ".join(missing)
            raise ValueError(f"{what}, not the schema `outpost export` writes")
        self._rows: int | None = None
        self._df: dict[str, int] = {}

    def _over_time(self) -> bool:
        return time.monotonic() > self._deadline

    def _query(self, sql: str, args=()) -> list:
        self._deadline = time.monotonic() + QUERY_SECONDS
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.OperationalError as e:
            if "interrupted" in str(e):
                raise ValueError(
                    f"a query took over {QUERY_SECONDS:g} s; the store is damaged"
                ) from None
            raise

    def get(self, ids: list[int]) -> dict[int, tuple[str, str, str]]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._query(
            f"SELECT id, source, heading, text FROM chunks WHERE id IN ({marks})", ids
        )
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def count(self) -> int:
        """Rows in the store (counted once)."""
        if self._rows is None:
            self._rows = self._query("SELECT count(*) FROM chunks")[0][0]
        return self._rows

    def check(self) -> int:
        """Read the table and the keyword index once, so a foreign file fails here; the count."""
        self._query("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH 'probe' LIMIT 1")
        return self.count()

    def document_frequency(self, term: str) -> int:
        """Chunks holding `term` (a word as a prefix, so every form counts), remembered per term."""
        if term not in self._df:
            phrase = (
                '"' + term.replace('"', "") + '"' + ("*" if term.isalpha() else "")
            )  # word forms
            self._df[term] = self._query(
                "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (phrase,)
            )[0][0]
        return self._df[term]

    def keyword_search(self, query: str, limit: int) -> list[int]:
        terms = [
            t for t in re.findall(r"[\w][\w.\-/]*[\w]|\w", query.lower()) if t not in STOPWORDS
        ]
        if not terms:
            return []
        match = " OR ".join('"' + t.replace('"', "") + '"' for t in dict.fromkeys(terms))
        rows = self._query(
            "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY bm25(chunks_fts) LIMIT ?",
            (match, limit),
        )
        return [r[0] for r in rows]


def usearch_index():
    """usearch's Index class, loaded after onnxruntime: with usearch 2.26.6 and onnxruntime 1.31.1
    importing usearch first makes the later onnxruntime import crash the process (segfault)."""
    import onnxruntime  # noqa: F401 - load order matters, see above
    from usearch.index import Index

    return Index


# usearch searches 64 candidates by default: recall@10 0.96 at 60k chunks; 128 gives 0.98
# at 0.35 ms per query (f16), benchmarks/retrieval_scale.py, docs/benchmarks.md.
EXPANSION_SEARCH = 128


class Retriever:
    def __init__(self, index_path: Path, store_path: Path, ndim: int, embedder: Embedder,
                 expansion: int = EXPANSION_SEARCH, exact: bool = False):  # fmt: skip
        Index = usearch_index()

        self.index = Index.restore(str(index_path), view=True)
        if self.index is None or self.index.ndim != ndim:
            raise ValueError(f"index {index_path} does not hold {ndim}-dimensional vectors")
        self.index.expansion_search = expansion  # what the export's recall check used
        self.exact = exact
        self.store = ChunkStore(store_path)
        self.embedder = embedder

    def search(self, question: str, k: int, hybrid: bool = True) -> list[Hit]:
        query = self.embedder.embed([question])[0]
        pool = max(4 * k, 20)
        found = self.index.search(query, min(pool, len(self.index)), exact=self.exact)
        dense_ids = [int(x) for x in found.keys]
        dense_score = {int(key): 1.0 - float(d) for key, d in zip(found.keys, found.distances)}
        fused: dict[int, float] = {}
        for rank, cid in enumerate(dense_ids):
            fused[cid] = fused.get(cid, 0.0) + 1.0 / (RRF_K + rank)
        if hybrid:
            for rank, cid in enumerate(self.store.keyword_search(question, pool)):
                fused[cid] = fused.get(cid, 0.0) + 1.0 / (RRF_K + rank)
        best = sorted(fused, key=lambda c: -fused[c])[:k]
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
