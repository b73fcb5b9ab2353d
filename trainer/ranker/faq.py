"""Question/answer pairs from the FAQ sections of Debian-packaged documentation, for the line
ranker (trainer/ranker/weights.py). Only the packages issue 18 names are used; the rest of Debian's
documentation is kept for evaluation.

    make ranker-data        # downloads the .debs with apt-get, extracts, writes data/faq/

A question is a heading that ends in "?" (Sphinx, zsh, Apache FAQs) or a paragraph of one
question (git's gitfaq, the Debian FAQ's numbered questions); its answer is what follows until
the next question or heading. The corpus written for retrieval holds the answers WITHOUT their
questions (each under its parent heading), so the ranker cannot learn that a line is right
because its heading repeats the question: real manuals do not phrase headings as questions.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGES = (
    "debian-faq",
    "python3-doc",
    "python3.11-doc",
    "git-doc",
    "sqlite3-doc",
    "apache2-doc",
    "nginx-doc",
    "bash-doc",
    "zsh-doc",
)
# python3-doc is an empty package depending on python3.11-doc, which holds the documents.
FOREIGN = re.compile(r"/manual/(?!en/)[a-z]{2}(-[a-z]{2})?/")  # Apache's translations
MIN_ANSWER_WORDS = 8


def download(root: Path) -> None:
    """apt-get download the packages into root/debs and extract them into root/files."""
    debs, files = root / "debs", root / "files"
    debs.mkdir(parents=True, exist_ok=True)
    files.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", *PACKAGES], cwd=debs, check=True)
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(files)], check=True)


def faq_files(files: Path) -> list[Path]:
    """Every English HTML or text document of the packages (FAQs and question-style sections
    anywhere in them); Sphinx's _sources copies and Apache's translations left out."""
    found = []
    base = files / "usr/share/doc"
    for p in sorted(base.rglob("*")):
        rel, name = p.relative_to(base).as_posix(), p.name.lower()
        if not p.is_file() or FOREIGN.search("/" + rel) or "/_sources/" in "/" + rel:
            continue
        if name.endswith((".html", ".txt")) or name.endswith(".en.txt.gz"):
            found.append(p)
    return found


def _blocks(path: Path):
    from outpost.export.documents.ingest import read_document

    if path.name.endswith(".gz"):
        with tempfile.NamedTemporaryFile(suffix=".txt") as tmp:
            tmp.write(gzip.decompress(path.read_bytes()))
            tmp.flush()
            return read_document(Path(tmp.name), path.name).blocks
    return read_document(path, path.name).blocks


_QUESTION = re.compile(r"^(?:\d+(?:\.\d+)*[.:]?\s+)?(.{12,220}\?)$")


def pairs_of(path: Path) -> list[dict]:
    """(question, answer blocks, parent heading) for each question in one FAQ document."""
    out: list[dict] = []
    current: dict | None = None
    for b in _blocks(path):
        heading = b.headings[-1] if b.headings else ""
        text = " ".join(b.text.split())
        asked = _QUESTION.match(heading.strip()) if heading else None
        if asked:  # a question heading: its blocks are the answer
            if current is None or current["question"] != asked.group(1):
                current = {
                    "question": asked.group(1),
                    "parent": " > ".join(b.headings[:-1]),
                    "answer": [],
                }
                out.append(current)
            current["answer"].append(b.text)
            continue
        one = _QUESTION.match(text)
        if one and "\n" not in b.text.strip():  # a paragraph that is one question
            current = {"question": one.group(1), "parent": " > ".join(b.headings), "answer": []}
            out.append(current)
        elif current is not None and " > ".join(b.headings) == current["parent"]:
            current["answer"].append(b.text)
        else:
            current = None
    return [p for p in out if len(" ".join(p["answer"]).split()) >= MIN_ANSWER_WORDS]


def build(files: Path, out: Path) -> dict:
    """Write out/docs/*.md (answers without their questions) and out/pairs.jsonl."""
    docs = out / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    counts: dict[str, int] = {}
    seen: set[str] = set()
    for path in faq_files(files):
        package = path.relative_to(files / "usr/share/doc").parts[0]
        pairs = [p for p in pairs_of(path) if p["question"] not in seen]
        seen.update(p["question"] for p in pairs)
        if not pairs:
            continue
        name = re.sub(r"[^\w.-]+", "_", path.relative_to(files / "usr/share/doc").as_posix())
        lines = [f"# {package}: {path.stem}", ""]
        for i, p in enumerate(pairs):
            lines += [f"## {p['parent'] or path.stem} ({i + 1})", "", *p["answer"], ""]
            rows.append(
                {
                    "id": hashlib.sha256(f"{name}:{i}:{p['question']}".encode()).hexdigest()[:12],
                    "question": p["question"],
                    "answer": "\n".join(p["answer"]),
                    "source": f"{name}.md",
                    "package": package,
                }
            )
        (docs / f"{name}.md").write_text("\n".join(lines), encoding="utf-8")
        counts[package] = counts.get(package, 0) + len(pairs)
    with open(out / "pairs.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return counts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=".outpost-cache/faq", help="Where the .debs are extracted.")
    ap.add_argument("--out", default="data/faq", help="Where docs/ and pairs.jsonl go.")
    ap.add_argument("--no-download", action="store_true", help="Use what --work already holds.")
    args = ap.parse_args(argv)
    work = Path(args.work)
    if not args.no_download:
        download(work)
    counts = build(work / "files", Path(args.out))
    print(json.dumps({"pairs": sum(counts.values()), "by_package": counts}), file=sys.stderr)


if __name__ == "__main__":
    main()
