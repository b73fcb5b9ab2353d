"""Check the line ranker's hand-written questions (trainer/ranker/questions/*.jsonl).

    .venv/bin/python -m outpost.trainer.ranker.questions --docs .outpost-cache/train [FILE ...]

Each line of a questions file is one question a technician or administrator would ask, over one
document of the training packages (docs/quality.md, "Training data"):

    {"id": "rsync-014", "package": "rsync", "doc": "man/rsync.1.txt",
     "question": "...", "answerable": true, "kind": "option",
     "answer": "<the verbatim line that answers>", "keywords": ["--partial"]}

An unanswerable question names the document it is close to and 1-3 `absent_terms`:

    {"id": "rsync-u03", ..., "answerable": false, "absent_terms": ["S3 bucket"]}

`doc` is relative to the training root (`--docs`, what `make ranker-data` extracts). The checks,
all of them for every row, reported together:
- the fields are there with the right types, ids and questions are unique;
- `answer` occurs verbatim (NFKC, whitespace folded) in the document as Outpost's reader reads it;
- 1-3 keywords, each inside the answer and none inside the question (case-insensitive);
- the question copies no run of 7 words of its document (it is asked in the user's words);
- an unanswerable row's absent terms occur nowhere in its document.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import tempfile
import unicodedata
from functools import lru_cache
from pathlib import Path

KINDS = (
    "option",
    "file",
    "setting",
    "command",
    "default",
    "limit",
    "step",
    "error",
    "why",
    "other",
)
RUN = 7  # words of the document a question may not copy in a row
MAX_ANSWER_CHARS = 400


def fold(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split()).casefold()


_WORD = re.compile(r"[\w'-]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(fold(text))


@lru_cache(maxsize=256)
def read_blocks(root: str, doc: str) -> tuple:
    """The document's blocks as Outpost's reader gives them."""
    from outpost.export.documents.ingest import read_document

    path = Path(root) / doc
    if path.name.endswith(".gz"):
        with tempfile.NamedTemporaryFile(suffix=Path(path.stem).suffix or ".txt") as tmp:
            tmp.write(gzip.decompress(path.read_bytes()))
            tmp.flush()
            return tuple(read_document(Path(tmp.name), path.name).blocks)
    return tuple(read_document(path, path.name).blocks)


@lru_cache(maxsize=64)
def document_text(root: str, doc: str) -> str:
    """The document's text as Outpost's reader gives it (blocks joined, whitespace folded)."""
    return fold("\n".join(b.text for b in read_blocks(root, doc)))


@lru_cache(maxsize=64)
def _runs(root: str, doc: str) -> frozenset:
    words = _words(document_text(root, doc))
    return frozenset(tuple(words[i : i + RUN]) for i in range(len(words) - RUN + 1))


def check_row(row: dict, root: str) -> list[str]:
    """What is wrong with one row (empty when it passes)."""
    problems = []
    for name, kind in (("id", str), ("package", str), ("doc", str), ("question", str)):
        if not isinstance(row.get(name), kind) or not row.get(name):
            problems.append(f"'{name}' must be a non-empty string")
    if not isinstance(row.get("answerable"), bool):
        problems.append("'answerable' must be true or false")
    if problems:
        return problems
    if not (Path(root) / row["doc"]).is_file():
        return [f"doc {row['doc']} is not under {root}"]
    question, text = row["question"], document_text(root, row["doc"])
    q_words = _words(question)
    runs = _runs(root, row["doc"])
    for i in range(len(q_words) - RUN + 1):
        if tuple(q_words[i : i + RUN]) in runs:
            problems.append(f"question copies the document: '{' '.join(q_words[i : i + RUN])}'")
            break
    if row["answerable"]:
        answer, keywords = row.get("answer"), row.get("keywords")
        if row.get("kind") not in KINDS:
            problems.append(f"'kind' must be one of {', '.join(KINDS)}")
        if not isinstance(answer, str) or not answer.strip():
            return problems + ["'answer' must be the verbatim answering line"]
        if len(answer) > MAX_ANSWER_CHARS:
            problems.append(f"answer is {len(answer)} characters (at most {MAX_ANSWER_CHARS})")
        if fold(answer) not in text:
            problems.append("answer does not occur verbatim in the document")
        if not isinstance(keywords, list) or not 1 <= len(keywords) <= 3:
            return problems + ["'keywords' must list 1-3 strings"]
        for k in keywords:
            if not isinstance(k, str) or len(k.strip()) < 2:
                problems.append(f"keyword {k!r} must be a string of 2 or more characters")
            elif fold(k) not in fold(answer):
                problems.append(f"keyword '{k}' is not in the answer")
            elif fold(k) in fold(question):
                problems.append(f"keyword '{k}' is in the question")
    else:
        terms = row.get("absent_terms")
        if not isinstance(terms, list) or not 1 <= len(terms) <= 3:
            return problems + ["'absent_terms' must list 1-3 strings"]
        for t in terms:
            if not isinstance(t, str) or fold(t) not in fold(question):
                problems.append(f"absent term {t!r} must be a string taken from the question")
            elif fold(t) in text:
                problems.append(f"absent term '{t}' occurs in the document")
    return problems


def load(paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{n}: not a JSON object")
            rows.append({**row, "_at": f"{path.name}:{n}"})
    return rows


def check(rows: list[dict], root: str) -> list[str]:
    """Every problem of every row, plus duplicate ids and questions."""
    problems, ids, questions = [], set(), set()
    for row in rows:
        for p in check_row(row, root):
            problems.append(f"{row['_at']} ({row.get('id')}): {p}")
        key = fold(str(row.get("question", "")))
        if row.get("id") in ids:
            problems.append(f"{row['_at']}: duplicate id {row.get('id')}")
        if key in questions:
            problems.append(f"{row['_at']}: duplicate question")
        ids.add(row.get("id"))
        questions.add(key)
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--docs", default=".outpost-cache/train", help="The training root.")
    args = ap.parse_args(argv)
    files = args.files or sorted((Path(__file__).parent / "questions").glob("*.jsonl"))
    rows = load(files)
    problems = check(rows, args.docs)
    for p in problems:
        print(p)
    answerable = sum(1 for r in rows if r.get("answerable") is True)
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[r.get("kind", "unanswerable") if r.get("answerable") else "unanswerable"] = (
            kinds.get(r.get("kind", "unanswerable") if r.get("answerable") else "unanswerable", 0)
            + 1
        )
    summary = {"rows": len(rows), "answerable": answerable, "problems": len(problems)}
    print(json.dumps({**summary, "kinds": kinds}), file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
