"""The learned line ranker on the device: a cross-encoder ONNX model (trainer/ranker/crossrank.py) run
with onnxruntime's C library (onnx_session) and `tokenizers`, no torch.

A bundle carries its own copy (`ranker/model.onnx`, `ranker/tokenizer.json`, listed, hashed and
signed in bundle.json like every other file); `Reranker.score(question, lines)` gives one logit
per line, higher for the line that answers. The line is read as the ranker was trained on it:
its heading's last two parts, then the line (`pair_text`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from outpost.runtime.ask.onnx_session import Session

MAX_TOKENS = 96  # as trained (trainer/ranker/crossrank.py)
BATCH = 16


def pair_text(heading: str, line: str) -> str:
    """What the ranker reads of a line: its heading's last two parts, then the line."""
    parts = [p for p in heading.split(" > ") if p][-2:]
    return (" > ".join(parts) + " | " if parts else "") + line


class Reranker:
    def __init__(self, folder: Path, threads: int = 2):
        from tokenizers import Tokenizer

        folder = Path(folder)
        self.session = Session(folder / "model.onnx", threads=threads, inter_threads=1, arena=False)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS, strategy="longest_first")
        self.tokenizer.no_padding()
        self.inputs = set(self.session.input_names)

    def score(self, question: str, lines: list[str]) -> np.ndarray:
        """One score per line (a logit: above 0, more likely than not the answering line)."""
        out = np.zeros(len(lines), dtype=np.float32)
        for lo in range(0, len(lines), BATCH):
            part = lines[lo : lo + BATCH]
            encs = self.tokenizer.encode_batch([(question, line) for line in part])
            width = max(len(e.ids) for e in encs)
            ids = np.zeros((len(encs), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            types = np.zeros_like(ids)
            for i, e in enumerate(encs):
                ids[i, : len(e.ids)] = e.ids
                mask[i, : len(e.ids)] = 1
                types[i, : len(e.ids)] = e.type_ids
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            feed = {k: v for k, v in feed.items() if k in self.inputs}
            out[lo : lo + len(part)] = self.session.run(feed)[0].reshape(-1)
        return out
