"""Training data: load and check chat or prompt/completion JSONL, build grounded examples from
documents, and tokenize with the base model's chat template (loss on assistant tokens only).

Accepted lines:
    {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
    {"prompt": "...", "completion": "..."}
    {"question": "...", "answer": "...", "source_path": "...", "answerable": true}   (with --docs)
"""

from __future__ import annotations

import random
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from outpost.runtime.ask.evaluate import source_matches
from outpost.runtime.ask.prompt import REFUSAL, Passage, build_messages
from outpost.runtime.ask.rank import Window
from outpost.runtime.ask.retrieve import Hit
from outpost.runtime.errors import InputError
from outpost.runtime.files import read_jsonl
from outpost.trainer.config import ANSWER_STYLES  # noqa: F401 - re-exported for callers

if TYPE_CHECKING:
    import numpy as np

    from outpost.runtime.bundle.store import ChunkStore
    from outpost.runtime.protocols import TermStore, TextEmbedder

ROLES = {"system", "user", "assistant"}
IGNORE = -100


def _fail(path: Path, line: int, problem: str) -> InputError:
    return InputError(f"{path}:{line}: {problem}")


def check_conversation(path: Path, number: int, item: dict) -> list[dict]:
    """One line -> a list of messages, or an InputError naming file:line and the problem."""
    if "messages" in item:
        messages = item["messages"]
        if not isinstance(messages, list) or not messages:
            raise _fail(path, number, '"messages" must be a non-empty list')
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("content"), str):
                raise _fail(path, number, f'message {i + 1} needs a string "content"')
            if m.get("role") not in ROLES:
                raise _fail(
                    path,
                    number,
                    f"message {i + 1} has unknown role {m.get('role')!r}; use system, user or assistant",
                )
        if not any(m["role"] == "assistant" for m in messages):
            raise _fail(path, number, "conversation has no assistant turn to learn from")
        roles = [m["role"] for m in messages]
        turns = roles[1:] if roles[0] == "system" else roles
        expected = ["user", "assistant"] * len(turns)
        if turns != expected[: len(turns)]:
            at = next(i for i, (r, e) in enumerate(zip(turns, expected)) if r != e)
            at += 2 if roles[0] == "system" else 1
            raise _fail(
                path,
                number,
                f"message {at} is {roles[at - 1]!r} out of order; after an "
                "optional system message, user and assistant turns alternate, user first",
            )
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    if "prompt" in item or "completion" in item:
        if not isinstance(item.get("prompt"), str) or not isinstance(item.get("completion"), str):
            raise _fail(path, number, '"prompt" and "completion" must both be strings')
        if not item["completion"].strip():
            raise _fail(path, number, '"completion" is empty')
        return [
            {"role": "user", "content": item["prompt"]},
            {"role": "assistant", "content": item["completion"]},
        ]
    raise _fail(path, number, 'expected "messages", or "prompt" and "completion"')


def load_conversations(path: str | Path) -> list[list[dict]]:
    p = Path(path)
    return [check_conversation(p, n, item) for n, item in read_jsonl(p)]


def load_qa(path: str | Path) -> list[dict]:
    """Question/answer/source lines for grounded fine-tuning."""
    p = Path(path)
    items = []
    for number, item in read_jsonl(p):
        if not isinstance(item.get("question"), str) or not item["question"].strip():
            raise _fail(p, number, 'needs a non-empty "question"')
        answerable = item.get("answerable", True)
        if not isinstance(answerable, bool):
            raise _fail(p, number, '"answerable" must be true or false')
        if answerable and (not isinstance(item.get("answer"), str) or not item.get("source_path")):
            raise _fail(p, number, 'an answerable question needs "answer" and "source_path"')
        items.append({**item, "answerable": answerable, "line": number})
    return items


# --- grounded examples ------------------------------------------------------------------


@dataclass
class GroundedConfig:
    passages: int = 4  # at most as many as the runtime gives the model
    min_passages: int = 2  # each example draws its passage count from [min_passages, passages]
    variants: int = 2  # prompts per answerable question (other distractors, other position)
    refusal_share: float = 0.3  # answerable questions also used with their document removed
    answer_style: str = "given"  # "quote": the passage's own sentence that holds the answer
    layout: str = "chunks"  # "windows": the sentence windows the runtime's reader shows
    embedder: TextEmbedder | None = None  # for "windows": SentenceEmbedder, or any embed(texts)
    seed: int = 0


NEARBY = 12  # distractors are drawn from the passages a keyword search ranks this high


def _sentences(text: str) -> list[str]:
    """Sentences, table rows and list items; lines wrapped mid-sentence (text, PDF) are rejoined."""
    lines: list[str] = []
    for line in (x.strip() for x in text.split("\n")):
        if not line:
            continue
        row = " | " in line or re.match(r"^([-*+]|\d+[.)])\s", line)
        if (
            lines
            and not row
            and not lines[-1].endswith((".", "!", "?", ":"))
            and " | " not in lines[-1]
        ):
            lines[-1] += " " + line
        else:
            lines.append(line)
    parts = [p for line in lines for p in re.split(r"(?<=[.!?])\s+", line)]
    return [p.strip() for p in parts if len(p.strip()) > 3]


def quote(answer: str, question: str, passage: str) -> str:
    """The sentence (or table row, list item) of `passage` that best carries `answer`.

    Small models copy far more reliably than they paraphrase: taught to quote the manual's own
    line, a 135M model keeps its numbers and part names. Falls back to `answer` when no line
    shares a word with it.
    """
    a_words, q_words = _words(answer), _words(question)
    scored = []
    for sentence in _sentences(passage):
        words = _words(sentence)
        scored.append(
            (2 * len(a_words & words) + len(q_words & words), len(a_words & words), sentence)
        )
    best = max(scored, default=None, key=lambda x: x[0])
    if best is None or not best[1]:
        return answer
    line = best[2].strip("|-* ").replace(" | ", ": ", 1).replace(" | ", "; ")
    return line if line.endswith((".", "!", "?")) else line + "."


def _words(text: str) -> set[str]:
    words = (w.strip(".-") for w in re.findall(r"[\w.\-]+", text.lower()))
    return {w for w in words if len(w) > 2}


def build_grounded(
    qa: list[dict], docs: list[str], config: GroundedConfig, log
) -> list[list[dict]]:
    """Conversations laid out exactly as the runtime prompts them.

    For an answerable question: `variants` prompts, each with the passage holding the answer
    at a random position among passages a keyword search ranks high (other parts of the same
    manual included, as the runtime's search returns them), and the answer citing it by number.
    For a share of answerable questions, and for every unanswerable one: passages without the
    answer (for answerable ones, nothing from its document), and the refusal as the target.
    """
    from outpost.export.documents.chunk import ChunkConfig, chunk_documents
    from outpost.export.documents.ingest import ingest

    documents, _, _ = ingest(docs)
    if not documents:
        raise InputError(
            f"no readable documents in {', '.join(docs)}; --docs needs the manuals the questions are about"
        )
    chunks = chunk_documents(documents, ChunkConfig())
    grounder = _Grounder(chunks, config)
    conversations = []
    for item in qa:
        if item["answerable"]:
            conversations += grounder.answerable(item)
        else:
            conversations += grounder.unanswerable(item)
    log(
        f"grounded examples: {len(conversations)} ({grounder.refusals} refusals) from {len(qa)} "
        f"questions over {len(chunks)} chunks"
    )
    return conversations


class _Grounder:
    """The conversations of one question at a time, drawing passages from the chunks with one
    random generator (seeded: the same data, the same examples)."""

    def __init__(self, chunks: list, config: GroundedConfig):
        self.chunks, self.config = chunks, config
        self.chunk_words = [_words(c.heading + " " + c.text) for c in chunks]
        self.rng = random.Random(config.seed)
        self.low = max(1, min(config.min_passages, config.passages))
        self.store = memory_store([c.heading + " " + c.text for c in chunks])
        self.refusals = 0

    def passages(self, ids: list[int], question: str = "", gold: int | None = None):
        """The passages as the runtime shows them, and where the gold one is (or None)."""
        chunks, config = self.chunks, self.config
        hits = [Hit(i, 0.0, chunks[i].source, chunks[i].heading, chunks[i].text) for i in ids]
        at = ids.index(gold) if gold in ids else None
        if config.layout == "windows":
            assert config.embedder is not None, 'layout "windows" reads with an embedder'
            return windows_layout(question, hits, at, config.embedder, self.store)
        return [Passage(h.source, h.heading, h.text) for h in hits], at

    def count(self) -> int:
        return self.rng.randint(self.low, self.config.passages)

    def ranked(self, question: str) -> list[int]:
        """Chunks by the question's words they share, most first (a keyword search)."""
        q_words = _words(question)
        return sorted(range(len(self.chunks)), key=lambda i: -len(q_words & self.chunk_words[i]))

    def unanswerable(self, item: dict) -> list[list[dict]]:
        ranked, out = self.ranked(item["question"]), []
        for _ in range(self.config.variants):
            ids = ranked[: self.count() + 2]
            self.rng.shuffle(ids)
            shown, _ = self.passages(ids[: self.config.passages], item["question"])
            out.append(_turn(item["question"], shown, REFUSAL))
            self.refusals += 1
        return out

    def answerable(self, item: dict) -> list[list[dict]]:
        chunks, config, rng = self.chunks, self.config, self.rng
        question, ranked = item["question"], self.ranked(item["question"])
        wanted = item["source_path"]
        same_source = [i for i in range(len(chunks)) if source_matches(chunks[i].source, wanted)]
        if not same_source:
            raise InputError(
                f"line {item['line']}: source_path {wanted!r} is not among the --docs files"
            )
        a_words = _words(item["answer"]) | _words(question)
        gold = max(same_source, key=lambda i: len(a_words & self.chunk_words[i]))
        nearby = [i for i in ranked[:NEARBY] if i != gold]
        out = []
        for _ in range(config.variants):
            ids = rng.sample(nearby, min(len(nearby), self.count() - 1))
            ids.insert(rng.randrange(len(ids) + 1), gold)
            shown, position = self.passages(ids, question, gold)
            answer = item["answer"].strip()
            if config.answer_style == "quote":
                answer = quote(answer, question, chunks[gold].text)
            if not re.search(r"\[\d+\]", answer):
                answer = f"{answer} [{position + 1}]"
            out.append(_turn(question, shown, answer))
        if rng.random() < config.refusal_share:
            others = [i for i in ranked if chunks[i].source != chunks[gold].source]
            shown, _ = self.passages(others[: self.count()], question)
            out.append(_turn(question, shown, REFUSAL))
            self.refusals += 1
        return out


class SentenceEmbedder:
    """The bundle's embedder model through sentence-transformers (the ONNX export the runtime
    uses agrees with it to cosine 1.0), so training windows are the ones the device shows."""

    def __init__(self, name: str | None = None):
        from sentence_transformers import SentenceTransformer

        from outpost.export.retrieval.embedder import EMBEDDED_EMBEDDER, resolve_embedder

        _, location = resolve_embedder(name or EMBEDDED_EMBEDDER)
        self.model = SentenceTransformer(location, device="cpu")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.encode(
            list(texts), normalize_embeddings=True, convert_to_numpy=True, batch_size=64
        )


def memory_store(texts: list[str]) -> ChunkStore:
    """The runtime's chunk store (runtime/bundle/store.py) over chunk texts, held in memory: the
    trainer's windows weigh words by the document frequencies the device's store gives, because
    they come from the same keyword index."""
    from outpost.runtime.bundle.store import ChunkStore, write_store

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chunks.sqlite"
        write_store([("memory", "", 0, len(t), t) for t in texts], path)
        return ChunkStore(data=path.read_bytes())


def windows_layout(
    question: str, hits: list[Hit], gold: int | None, embedder: TextEmbedder, store: TermStore
) -> tuple[list[Passage], int | None]:
    """The runtime reader's windows over `hits` (runtime/ask/rank.py), keeping one from the gold
    chunk (its best unit) so the answer stays among what the model reads. Returns the passages
    and the gold window's position."""
    from outpost.runtime.ask.rank import read

    reading = read(question, hits, embedder, store)  # the runtime's defaults
    chosen = list(reading.windows)
    if gold is not None and not any(w.hit == gold for w in chosen):
        best = max(
            (j for j, u in enumerate(reading.units) if u.hit == gold),
            key=lambda j: reading.scores[j],
            default=None,
        )
        if best is not None:
            unit = reading.units[best]
            chosen[-1:] = [Window(gold, unit.start, unit.end)]
    shown = [
        Passage(hits[w.hit].source, hits[w.hit].heading, hits[w.hit].text[w.start : w.end])
        for w in chosen
    ]
    position = next((i for i, w in enumerate(chosen) if w.hit == gold), None)
    return shown, position


def _turn(question: str, passages: list[Passage], reply: str) -> list[dict]:
    return build_messages(question, passages) + [{"role": "assistant", "content": reply}]


# --- tokenisation -----------------------------------------------------------------------


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]


def assistant_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of each assistant reply (with its end tag)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = tokenizer.apply_chat_template(
            messages[:i], tokenize=False, add_generation_prompt=True
        )
        upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        begin = text.find(m["content"], len(prefix)) if text.startswith(prefix) else -1
        if begin < 0 or not upto.startswith(text[:begin]):
            raise InputError(
                "the chat template does not render conversations incrementally; cannot mask prompts"
            )
        end = stop = begin + len(m["content"])
        # Keep the end-of-turn marker (what the full text and the render up to this turn share).
        while stop < min(len(text), len(upto)) and text[stop] == upto[stop]:
            stop += 1
        marker = text[end:stop]
        cut = max(marker.rfind("\n"), marker.rfind(" "))
        end += len(marker[:cut].rstrip()) if cut >= 0 else len(marker)
        spans.append((begin, end))
    return text, spans


def tokenize(tokenizer, messages: list[dict], max_length: int) -> tuple[Example, bool]:
    """Token ids and labels (-100 outside assistant replies). Returns (example, truncated)."""
    text, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    labels = []
    for token, (start, end) in zip(ids, enc["offset_mapping"]):
        inside = any(s <= start < e or (start < s < end) for s, e in spans)
        labels.append(token if inside else IGNORE)
    truncated = len(ids) > max_length
    return Example(ids[:max_length], labels[:max_length]), truncated


def pack(examples: list[Example], max_length: int, pad_id: int) -> list[Example]:
    """Greedy sample packing into rows of at most max_length tokens (labels keep their masks)."""
    rows: list[Example] = []
    cur = Example([], [])
    for ex in sorted(examples, key=lambda e: -len(e.input_ids)):
        if cur.input_ids and len(cur.input_ids) + len(ex.input_ids) > max_length:
            rows.append(cur)
            cur = Example([], [])
        cur.input_ids += ex.input_ids
        cur.labels += ex.labels
    if cur.input_ids:
        rows.append(cur)
    return rows
