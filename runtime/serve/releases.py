"""The releases a server answers from: the bundle being served, and the next one.

Serving a bundles folder (`outpost install --bundles DIR`), `Releases` follows `current`: a new
release is opened and verified beside the old one, new requests go to it once it has loaded,
and questions in flight finish on the old one. A release that fails verification is refused
(and tried again once its files change); the old one keeps serving.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from outpost.runtime.config import ServeConfig
from outpost.runtime.errors import InputError, OutpostError, one_line
from outpost.runtime.serve.scheduler import Stopped

if TYPE_CHECKING:
    import numpy as np

    from outpost.runtime.ask.answer import Answer
    from outpost.runtime.ask.assistant import Assistant
    from outpost.runtime.ask.embed import Embedder


@dataclass
class Release:
    """One opened, verified bundle, and all the server asks of it."""

    assistant: Assistant
    path: Path
    content_id: str
    model: str  # the id /v1/models shows for the base model
    loaded_at: float

    @property
    def adapters(self) -> tuple[str, ...]:
        return self.assistant.adapters

    @property
    def signed_by(self) -> str | None:
        """The trusted key that verified this release's signature (serve --trust), or None."""
        return self.assistant.bundle.signed_by

    @property
    def models(self) -> list[str]:
        """What /v1/models lists: the base model's id, then each adapter by name."""
        return [self.model, *self.adapters]

    def adapter_for(self, model: str | None) -> str | None:
        """The adapter a request's `model` names: an adapter's name; the base model's id (no
        adapter); none given, the default (serve's --adapter, else the base). A bundle without
        adapters ignores `model`, as llama.cpp's server does; one with adapters answers an
        unknown name with LookupError."""
        if model in self.adapters:
            return model
        if model == self.model:
            return None
        if not model or not self.adapters:
            return self.assistant.adapter
        raise LookupError(f"model {model!r} is not served here; GET /v1/models lists them")

    def shown_model(self, adapter: str | None) -> str:
        return adapter or self.model

    @property
    def max_new_tokens(self) -> int:
        return self.assistant.settings.max_new_tokens

    def ask(self, question: str, history: list[dict], **kwargs: Any) -> Answer:
        """Answer one question (runtime/ask/assistant.py, `Assistant.ask`)."""
        return self.assistant.ask(question, history, **kwargs)

    def passage(self, chunk_id: int) -> tuple[str, str, str] | None:
        """(source, heading, text) of a stored passage, or None."""
        return self.assistant.retriever.store.get([chunk_id]).get(chunk_id)

    def embed(
        self, texts: list[str], should_stop: Callable[[], bool] = lambda: False
    ) -> np.ndarray:
        """Unit vectors for `texts`. A text longer than the embedder reads is refused (its
        vector would be of its beginning only); `should_stop` is asked between batches."""
        # A release's retriever holds the bundle's own Embedder (runtime/ask/embed.py), tokenizer too.
        embedder = cast("Embedder", self.assistant.retriever.embedder)
        limit = (embedder.tokenizer.truncation or {}).get("max_length")
        for i, encoding in enumerate(embedder.tokenizer.encode_batch(texts)):
            if encoding.overflowing:
                raise InputError(
                    f"input[{i}] is longer than the {limit} tokens the embedder reads; "
                    "split it into shorter texts"
                )

        def between_batches(done: int, total: int) -> None:
            if should_stop():
                raise Stopped()

        if should_stop():
            raise Stopped()
        return embedder.embed(texts, progress=between_batches)


def load_release(path: Path, config: ServeConfig) -> Release:
    from outpost.runtime.ask.assistant import open_assistant

    assistant = open_assistant(path, config.ask)
    try:
        assistant.load_model()  # a release is whole before it serves
    except BaseException:
        assistant.bundle.close()
        raise
    cid = assistant.bundle.content_id
    return Release(assistant, path, cid, f"outpost-{cid[:12]}", time.time())


def folder_stamp(folder: Path) -> tuple[tuple[str, str, int, int, int, int], ...]:
    """Name, inode, size, mtime and ctime of every file below `folder`: a release repaired in
    place (installed again to the same path) differs, so it is tried again."""
    entries = []
    for parent, _, names in os.walk(folder):
        for name in names:
            try:
                st = os.lstat(os.path.join(parent, name))
            except OSError:
                continue
            entries.append((parent, name, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(sorted(entries))


class Releases:
    """Follows the configured source; `current` is swapped in one assignment, so a request that
    took a reference keeps its release to the end."""

    def __init__(self, config: ServeConfig, say: Callable[[dict], None]):
        self.config, self.say = config, say
        self.current: Release | None = None
        self.error: str | None = None
        self.refused: tuple | None = None  # (target, stamp) that failed: retried once it changes
        self.switches = 0

    def target(self) -> Path:
        from outpost.runtime.bundle.install import resolve

        return resolve(self.config.source).resolve()

    def refresh(self) -> None:
        try:
            target = self.target()
        except OSError as e:
            self.error = f"cannot read {self.config.source}: {e}"
            return
        if self.current and target == self.current.path:
            return
        stamp = folder_stamp(target)
        if (target, stamp) == self.refused:
            return
        self.say({"event": "loading", "bundle": str(target)})
        try:
            release = load_release(target, self.config)
        except (OutpostError, ValueError, OSError) as e:
            self.refused, self.error = (target, stamp), one_line(str(e))
            self.say({"event": "refused", "bundle": str(target), "error": self.error})
            return
        old, self.current, self.error, self.refused = self.current, release, None, None
        self.switches += old is not None
        self.say(
            {
                "event": "serving",
                "bundle": str(target),
                "content_id": release.content_id,
                "replaced": old.content_id if old else None,
            }
        )

    def follow(self, stop: threading.Event) -> None:
        while True:
            self.refresh()
            if stop.wait(self.config.watch):
                return
