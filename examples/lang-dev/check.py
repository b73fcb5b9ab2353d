"""Check the Norwegian and Dutch development sets against the installed manuals.

    apt-get install -y debian-edu-doc-nb-no debian-edu-doc-nl
    .venv/bin/python examples/lang-dev/check.py [--doc /usr/share/doc]

For every question: each evidence quote appears in its manual's text (as Outpost's HTML reader
extracts it, whitespace collapsed), each answer keyword appears in its evidence, and each absent
term of an unanswerable question appears nowhere in the manual (case-blind). Prints one summary
line; exit status 1 when anything fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from pathlib import Path

HERE = Path(__file__).resolve().parent
MANUALS = {
    "nb": "debian-edu-doc-nb-no/debian-edu-bookworm-manual.html",
    "nl": "debian-edu-doc-nl/debian-edu-bookworm-manual.html",
}


def flat(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def manual_text(path: Path) -> str:
    from outpost.export.documents.ingest import read_document

    return flat(" ".join(b.text for b in read_document(path, path.name).blocks))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--doc", default="/usr/share/doc")
    args = ap.parse_args()
    problems, counted = [], {}
    for lang, rel in MANUALS.items():
        path = Path(args.doc) / rel
        if not path.is_file():
            print(f"{path} is missing: apt-get install -y {rel.split('/')[0]}", file=sys.stderr)
            return 1
        text = manual_text(path)
        lower = text.lower()
        rows = [json.loads(line) for line in (HERE / lang / "qa.jsonl").read_text().splitlines()]
        counted[lang] = (sum(r["answerable"] for r in rows), sum(not r["answerable"] for r in rows))
        for r in rows:
            if r["answerable"]:
                evidence = flat(r["evidence"])
                if r["source_path"] != rel or evidence not in text:
                    problems.append(f"{r['id']}: evidence not in {rel}")
                for k in r["answer_keywords"]:
                    if flat(k).lower() not in evidence.lower():
                        problems.append(f"{r['id']}: keyword {k!r} not in its evidence")
            else:
                for term in r["absent_terms"]:
                    if term.lower() in lower:
                        problems.append(f"{r['id']}: absent term {term!r} is in the manual")
    summary = ", ".join(
        f"{lang} {a} answerable + {u} unanswerable" for lang, (a, u) in counted.items()
    )
    print(f"{summary}: {'all checks pass' if not problems else '; '.join(problems)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
