"""The chunk store, one SQLite file per bundle: its schema, its writer and its reader.

`write_store` (the export) and `ChunkStore` (the device) share the one schema below; the
reader opens the file read-only and immutable, with `trusted_schema` off, refuses any other
schema (a view, a trigger, an index or a missing table) and stops any query after
QUERY_SECONDS, so a hostile store is refused or stopped, never run.

On a device the store is opened from its bytes (`ChunkStore(data=...)`), the very bytes that
were read from the verified descriptor and hashed (runtime/bundle/open.py, `Bundle.verified_bytes`),
never from a name: SQLite resolves a path itself (a /proc/self/fd link becomes the name it
points at), so a path could reach a file other than the one that was checked.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

# The one schema: written by `write_store` at export, the only one `ChunkStore` opens.
STORE_SCHEMA = (
    "CREATE TABLE chunks (id INTEGER PRIMARY KEY, source TEXT NOT NULL, heading TEXT NOT NULL,"
    " start INTEGER NOT NULL, end INTEGER NOT NULL, text TEXT NOT NULL)",
    "CREATE VIRTUAL TABLE chunks_fts USING fts5(text, heading, content='chunks',"
    " content_rowid='id', tokenize=\"unicode61 tokenchars '_-'\")",
)
DF_CACHE = 100_000  # document frequencies remembered per store
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

    def __init__(self, path: Path | None = None, data: bytes | None = None):
        if data is not None:  # the verified bytes, in memory: no name left to resolve
            self.db = sqlite3.connect(":memory:", check_same_thread=False)
            try:
                self.db.deserialize(data)
            except sqlite3.DatabaseError as e:
                self.db.close()
                raise ValueError(f"not an SQLite store ({e})") from None
        elif path is not None:
            self.db = sqlite3.connect(store_uri(path), uri=True, check_same_thread=False)
        else:
            raise TypeError("ChunkStore needs the store's path or its bytes")
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

    def close(self) -> None:
        self.db.close()

    def _over_time(self) -> bool:
        return time.monotonic() > self._deadline

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
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

    def rows(self) -> Iterator[tuple[int, str, str, int, int, str]]:
        """Every chunk in id order, as (id, source, heading, start, end, text): what
        `export --update` keeps of an earlier bundle (read in pages)."""
        last = -1
        while True:
            page = self._query(
                "SELECT id, source, heading, start, end, text FROM chunks WHERE id > ? "
                "ORDER BY id LIMIT 2000",
                (last,),
            )
            if not page:
                return
            yield from page
            last = page[-1][0]

    def count(self) -> int:
        """Rows in the store (counted once)."""
        if self._rows is None:
            self._rows = self._query("SELECT count(*) FROM chunks")[0][0]
        return self._rows

    def check(self) -> int:
        """Read the table and the keyword index once, so a foreign file fails here; the count."""
        self._query("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH 'probe' LIMIT 1")
        return self.count()

    def document_frequency(self, term: str, prefix: bool = True) -> int:
        """Chunks holding `term` (a word as a prefix, so every form counts, unless `prefix` is
        False), remembered per term."""
        phrase = _phrase(term, prefix and term.isalpha())
        if phrase not in self._df:
            if len(self._df) >= DF_CACHE:  # a long-running server asks endless new words
                self._df.clear()
            self._df[phrase] = self._query(
                "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (phrase,)
            )[0][0]
        return self._df[phrase]

    def keyword_search(self, terms: list[str], limit: int) -> list[int]:
        """Chunks holding any of `terms`, best BM25 first."""
        if not terms:
            return []
        match = " OR ".join(_phrase(t) for t in dict.fromkeys(terms))
        rows = self._query(
            "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY bm25(chunks_fts) LIMIT ?",
            (match, limit),
        )
        return [r[0] for r in rows]


def _phrase(term: str, prefix: bool = False) -> str:
    """An FTS5 phrase for a term (quotes dropped), as a prefix when asked: every word form."""
    return '"' + term.replace('"', "") + '"' + ("*" if prefix else "")


def write_store(rows: Iterable[tuple[str, str, int, int, str]], path: Path) -> None:
    """Write the chunks (source, heading, start, end, text; ids in order from 0) and their
    keyword index to a new store at `path`."""
    db = sqlite3.connect(path)
    with db:
        db.execute(STORE_SCHEMA[0])
        db.executemany(
            "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?)",
            [(i, *row) for i, row in enumerate(rows)],
        )
        db.execute(STORE_SCHEMA[1])
        db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild')")
    db.execute("VACUUM")
    db.close()
