"""`outpost export --update PREVIOUS`: keep what an earlier bundle already holds.

A document whose bytes are unchanged (same source path, same sha256 as recorded in PREVIOUS's
manifest) keeps its chunks, as stored, without being read again, provided the chunker settings
are the same. Its vectors are kept too when the embedder is byte-identical to PREVIOUS's and
PREVIOUS's index stores them exactly (f32, or f16, which converts back to the same f16). An i8
index does not give its vectors back exactly, so they are embedded again. New and changed
documents are read and embedded; removed ones are simply not carried over. The new bundle is
built in full from these parts (store, index, checks), so it equals a full rebuild.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from outpost.export.documents.chunk import Chunk
from outpost.runtime.errors import InputError

if TYPE_CHECKING:
    from outpost.runtime.bundle.open import Bundle

EXACT_DTYPES = ("f32", "f16")  # index dtypes whose stored vectors come back exactly


@dataclass
class Previous:
    path: Path
    documents: dict[str, dict]  # source -> {"path", "type", "sha256"} as recorded
    chunks: dict[str, list[tuple[int, Chunk]]] = field(default_factory=dict)  # by source
    chunker: dict = field(default_factory=dict)
    embedder_sha256: str = ""
    index_dtype: str = ""
    index_file: Path | None = None
    ndim: int = 0
    opened: Bundle | None = None  # the pinned, verified bundle; its view holds the index

    def close(self) -> None:
        if self.opened is not None:
            self.opened.close()
            self.opened = None

    def unchanged(self, source: str, sha256: str) -> bool:
        known = self.documents.get(source)
        if not known:
            return False
        return known.get("sha256") == sha256 and source in self.chunks

    def vectors(self, ids: list[int]) -> np.ndarray:
        """The stored vectors of PREVIOUS's chunks `ids`, as float32."""
        from outpost.runtime.ask.retrieve import usearch_index

        index = usearch_index().restore(str(self.index_file), view=True)
        assert index is not None  # verified with the bundle
        if not ids:
            return np.zeros((0, self.ndim), dtype=np.float32)
        # usearch takes numpy's float32 here; its annotation names only its own kinds
        got = index.get(np.asarray(ids, dtype=np.uint64), dtype=np.float32)  # type: ignore[arg-type]
        return np.asarray(got, dtype=np.float32).reshape(len(ids), self.ndim)


def open_previous(
    path: str | Path, trust: Sequence[Path] = (), signing_key: str | Path | None = None
) -> Previous:
    """PREVIOUS verified, then its manifest, documents and chunks read from what was verified.

    Nothing unsigned becomes signed: when the new bundle is signed (`signing_key`) or keys are
    trusted (`trust`), PREVIOUS must carry a signature by one of them (the signing key's own
    counts); otherwise at least every file's sha256 must match PREVIOUS's manifest. The chunk
    store is read from the very bytes that were hashed (runtime/bundle/open.py, `verified_bytes`),
    and the index through the pinned descriptors, so nothing renamed or swapped in the folder
    meanwhile is carried over. A kept chunk's document is re-hashed by the caller
    (`Previous.unchanged`)."""
    from outpost.runtime.bundle.open import open_pinned, open_store
    from outpost.runtime.bundle.verify import load_public_keys, problems_of
    from outpost.runtime.errors import OutpostError

    folder = Path(path)
    try:
        trusted = load_public_keys(list(trust)) if trust else {}
        if signing_key is not None:
            from outpost.export.ship.sign import signer_of

            trusted.update(signer_of(Path(signing_key)))
        bundle = open_pinned(folder, view=True)
    except OutpostError as e:
        raise InputError(f"--update {folder}: {e}") from None
    try:
        problems = problems_of(bundle, trusted or None, hashes=True, unexpected=False)
        if problems:
            why = "; ".join(map(str, problems))
            fix = (
                "sign it with a trusted key, or rebuild without --update"
                if trusted
                else "rebuild without --update or copy the bundle again"
            )
            raise InputError(f"--update {folder} failed verification: {why}; {fix}")
        m = bundle.manifest
        previous = Previous(
            path=folder,
            documents={d["path"]: d for d in m.sources.documents if isinstance(d, dict)},
            # A bundle from before `--pdf-text` read PDFs with pypdf: the same settings as now.
            chunker={"pdf_text": "pypdf", **{k: v for k, v in m.chunker.items() if k != "chunks"}},
            embedder_sha256=m.index.embedder.sha256,
            index_dtype=m.index.dtype,
            index_file=bundle.file(m.index.file),
            ndim=m.index.ndim,
            opened=bundle,
        )
        store = open_store(bundle)
        try:
            for chunk_id, source, heading, start, end, text in store.rows():
                chunk = Chunk(source, heading, text, start, end)
                previous.chunks.setdefault(source, []).append((chunk_id, chunk))
        finally:
            store.close()
    except OutpostError as e:
        bundle.close()
        if isinstance(e, InputError):
            raise
        raise InputError(f"--update {folder}: {e}") from None
    except BaseException:
        bundle.close()
        raise
    return previous
