"""Sentence embeddings with the bundle's ONNX embedder (pooling and normalisation in the graph).

The exporter embeds the chunks with this same class, so index and runtime always agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from outpost.runtime.ask.onnx_session import Session
from outpost.runtime.bundle.manifest import EmbedderInfo


class Embedder:
    def __init__(
        self,
        model_path: Path,
        tokenizer_path: Path,
        max_tokens: int,
        threads: int = 0,
        prepack: bool = False,
    ):
        from tokenizers import Tokenizer

        # prepack False: for fp32, pre-packed copies of the weights cost ~28 MB resident and
        # bought little speed here; int8: 2 MB for ~7 % (docs/benchmarks.md, "Memory").
        self.session = Session(
            model_path, threads=threads, prepack=prepack, log_severity=3, arena=False
        )
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.enable_truncation(max_tokens)
        self.tokenizer.no_padding()
        self.input_names = set(self.session.input_names)
        self.dim = int(self.session.output_dims(0)[-1])

    def embed(
        self,
        texts: Sequence[str],
        batch_size: int = 8,  # activations grow with the batch: 32 x 256 tokens peaked 110 MB higher
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Sort by length so each batch pads little; write rows back in input order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            encodings = self.tokenizer.encode_batch([texts[i] for i in rows])
            width = max(len(e.ids) for e in encodings)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            types = np.zeros_like(ids)
            for r, e in enumerate(encodings):
                n = len(e.ids)
                ids[r, :n], mask[r, :n], types[r, :n] = e.ids, 1, e.type_ids
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            feeds = {k: v for k, v in feeds.items() if k in self.input_names}
            out[rows] = self.session.run(feeds)[0]
            if progress:
                progress(min(start + batch_size, len(order)), len(order))
        return out


def open_embedder(bundle_path: Path, config: EmbedderInfo, threads: int = 0) -> Embedder:
    return Embedder(
        bundle_path / config.file,
        bundle_path / config.tokenizer,
        config.max_tokens,
        threads,
        prepack=config.variant == "int8",
    )
