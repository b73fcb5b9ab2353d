"""What the reader asks of a chunk store and of an embedder, as `typing.Protocol`s.

On a device these are runtime/bundle/store.py's `ChunkStore` and runtime/ask/embed.py's `Embedder`. The
trainer lays out its training windows with the same reader over the same `ChunkStore` built in
memory (`memory_store`) and `SentenceEmbedder` (the bundle's embedder through
sentence-transformers), both in trainer/data.py. The functions that take a store or an embedder (runtime/ask/terms.py, rank.py,
runtime/ask/names.py, runtime/ask/retrieve.py, trainer/data.py) are typed with these, so `make types`
checks every one of them against what it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np


class TermStore(Protocol):
    """Document frequencies: what evidence coverage weighs a question's terms by, and what the
    name check looks a name up with."""

    def count(self) -> int:
        """The chunks in the store."""
        ...

    def document_frequency(self, term: str, prefix: bool = True) -> int:
        """The chunks holding `term`: a word as a prefix, so every form counts, unless `prefix`
        is False (then as written: "Wi-Fi", "microsoft active directory")."""
        ...


class TextEmbedder(Protocol):
    """Sentence embeddings, one unit-length row per text."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """A float32 array of shape (len(texts), dimensions)."""
        ...
