"""The learned line ranker's training groups: questions, each with candidate lines labelled.

    .venv/bin/python -m outpost.trainer.ranker.rankdata --docs .outpost-cache/train --out data/ranker

Two sources of questions, both over the documentation of the Debian packages issue 29 names
(trainer/ranker/trainset.py downloads and renders them; the rest of Debian is kept for evaluation):
- **written**: trainer/ranker/questions/*.jsonl, asked the way technicians ask, each with its verbatim
  answering line (checked by trainer/ranker/questions.py), and unanswerable ones near covered topics;
- **generated** from the documents' structure: option lists, FILES and ENVIRONMENT entries of
  manual pages (the question is the entry's description, the answer the entry that names it).
The FAQ pairs of the last round (trainer/ranker/faq.py) are left out: their answers are explanations,
not the lookups technicians ask.

Candidates of a question are lines (runtime/ask/units.py `split_units`) of its document: the
answering ones (holding the answer line, or part of it), then hard negatives: the lines that
share most of the question's words (the line that restates the question, the neighbour of the
answer) unless they hold all of its keywords, then a few lines of other documents of the same
package. An unanswerable question has only negatives. Each line is shown with its heading
(`pair_text`), as the runtime shows it. Groups are split by package for the held-out check.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from outpost.runtime.ask.rerank import pair_text
from outpost.trainer.ranker.questions import fold, load, read_blocks

HARD = 10  # lexical hard negatives per question
NEAR = 2  # the answer's neighbours (when they do not hold the answer)
EASY = 3  # lines of other documents of the package
GENERATED_PER_DOC = 12
# Held out for the check (whole packages, never trained on): a man-page set, a tool, a manual.
HELD_OUT = ("rsync", "chrony", "e2fsprogs", "iproute2", "sqlite3-doc", "zsh-doc")
_WORD = re.compile(r"[\w][\w\-./]*")
_OPTION = re.compile(
    r"^((?:-{1,2}[A-Za-z0-9][\w-]*(?:[= ]?(?:[A-Z][A-Z_]*|<[^>]+>|\[[^\]]+\]))?"
    r"(?:,\s+|\s+|$))+)(?=[A-Z])(.{20,})$"
)
_ENTRY = re.compile(r"^((?:/|~/|\$)[\w./~$-]+|[A-Z][A-Z0-9_]{2,})\s+(?=[A-Z])(.{20,})$")


def units_of(root: str, doc: str) -> list[tuple[str, str]]:
    """(heading, line) for every line of the document, in order."""
    from outpost.runtime.ask.units import split_units

    out = []
    for b in read_blocks(root, doc):
        heading = " > ".join(b.headings)
        out += [(heading, u.text) for u in split_units(b.text)]
    return out


def _words(text: str) -> list[str]:
    return _WORD.findall(fold(text))


def _lexical(question: str, lines: list[str], df: Counter, n: int) -> list[float]:
    asked = set(_words(question))
    scores = []
    for line in lines:
        have = set(_words(line))
        scores.append(sum(math.log(1 + n / (1 + df[w])) for w in asked & have))
    return scores


def answers(answer: str, line: str) -> bool:
    """Whether a line (folded) is the answer line (folded) or a large enough part of it."""
    return bool(answer) and (
        answer in line or (len(line) >= 25 and line in answer and len(line) >= 0.3 * len(answer))
    )


def group_of(row: dict, root: str, units: list[tuple[str, str]], others: list, rng) -> dict:
    """One question's candidates and labels (1: the line answers)."""
    answer = fold(row.get("answer", ""))
    keywords = [fold(k) for k in row.get("keywords", [])]
    folded = [fold(t) for _, t in units]
    positive = [answers(answer, f) for f in folded]
    df = Counter(w for f in folded for w in set(_words(f)))
    lexical = _lexical(row["question"], folded, df, len(folded))
    holds_all = [bool(keywords) and all(k in f for k in keywords) for f in folded]
    picked = [i for i, p in enumerate(positive) if p]
    around = {k for i in picked for k in (i - 1, i + 1) if 0 <= k < len(units) and not positive[k]}
    near = [k for k in sorted(around) if not holds_all[k]][:NEAR]
    order = sorted(range(len(units)), key=lambda i: -lexical[i])
    hard = [i for i in order if not positive[i] and not holds_all[i] and i not in near][:HARD]
    chosen = picked + near + hard
    lines = [pair_text(*units[i]) for i in chosen]
    labels = [1] * len(picked) + [0] * (len(near) + len(hard))
    roles = ["answer"] * len(picked) + ["near"] * len(near) + ["hard"] * len(hard)
    for heading, line in rng.sample(others, min(EASY, len(others))):
        lines.append(pair_text(heading, line))
        labels.append(0)
        roles.append("easy")
    return {
        "id": row["id"],
        "package": row["package"],
        "source": row["source"],
        "kind": row.get("kind", "unanswerable") if row.get("answerable", True) else "unanswerable",
        "question": row["question"],
        "lines": lines,
        "labels": labels,
        "roles": roles,
    }


def generated_rows(root: str, index: list[dict], rng) -> list[dict]:
    """Questions made from manual pages' structure: an option, file or variable entry whose
    description is the question ('With rsync, which option: keep partially transferred
    files?') and whose entry names the answer."""
    rows: list[dict] = []
    for doc in index:
        if not doc["file"].startswith("man/"):
            continue
        tool = Path(doc["file"]).name.split(".")[0]
        found = []
        for heading, line in units_of(root, doc["file"]):
            section = heading.split(" > ")[1].lower() if " > " in heading else ""
            m = _OPTION.match(line)
            if m and section in ("options", "description", "commands", ""):
                label, desc = m.group(1).strip(), m.group(2)
                what = "option"
            elif (m := _ENTRY.match(line)) and section in ("files", "environment"):
                label, desc = m.group(1), m.group(2)
                what = "file" if section == "files" else "environment variable"
            else:
                continue
            first = re.split(r"(?<=[.;])\s", desc, maxsplit=1)[0].rstrip(".;")
            name = label.split(",")[0].split("=")[0].split()[0]
            if len(first.split()) < 4 or fold(name) in fold(first):
                continue
            question = f"In {tool}, which {what} does this: {first[0].lower()}{first[1:]}?"
            found.append((question, line, name, what))
        for question, line, name, what in rng.sample(found, min(GENERATED_PER_DOC, len(found))):
            rows.append(
                {
                    "id": f"gen-{len(rows):05d}",
                    "package": doc["package"],
                    "doc": doc["file"],
                    "question": question,
                    "answerable": True,
                    "kind": "option" if what == "option" else "file",
                    "answer": line,
                    "keywords": [name],
                }
            )
    return rows


def build(
    root: str, out: Path, seed: int = 0, feedback: Sequence[str] = (), trust: Sequence[str] = ()
) -> dict:
    rng = random.Random(seed)
    index = [json.loads(line) for line in open(Path(root) / "text" / "index.jsonl")]
    package_of = {d["file"]: d["package"] for d in index}
    written = load(sorted((Path(__file__).parent / "questions").glob("*.jsonl")))
    for r in written:
        r["source"] = "written"
        r["package"] = package_of.get(r["doc"], r["package"])
    generated = generated_rows(root, index, rng)
    for r in generated:
        r["source"] = "generated"
    by_package: dict[str, list[str]] = {}
    for d in index:
        by_package.setdefault(d["package"], []).append(d["file"])
    groups: list[dict] = []
    counts: Counter[str] = Counter()
    for row in written + generated:
        units = units_of(root, row["doc"])
        if not units:
            continue
        mates = [f for f in by_package.get(row["package"], []) if f != row["doc"]]
        others = []
        for f in rng.sample(mates, min(3, len(mates))):
            others += units_of(root, f)[:40]
        g = group_of(row, root, units, others, rng)
        if row.get("answerable", True) and not any(g["labels"]):
            counts["answer line not found"] += 1
            continue
        g["split"] = "held_out" if row["package"] in HELD_OUT else "train"
        groups.append(g)
        counts[
            f"{g['split']} {row['source']} {'answerable' if any(g['labels']) else 'unanswerable'}"
        ] += 1
    if feedback:  # the field loop (trainer/feedback.py): confirmed and rejected quotes
        from outpost.trainer import feedback as field

        rows, loaded = field.load(feedback, trust)
        taught, made = field.ranker_groups(rows)
        groups += taught
        counts.update({f"train feedback {k}": v for k, v in made.items()})
        counts["feedback untrusted"] += loaded["untrusted"]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "groups.jsonl", "w", encoding="utf-8") as fh:
        for g in groups:
            fh.write(json.dumps(g, ensure_ascii=False) + "\n")
    summary = {
        "groups": len(groups),
        "pairs": sum(len(g["lines"]) for g in groups),
        "counts": dict(sorted(counts.items())),
        "held_out_packages": list(HELD_OUT),
        "seed": seed,
    }
    (out / "data.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", default=".outpost-cache/train", help="The training root.")
    ap.add_argument("--out", default="data/ranker", help="Where groups.jsonl goes.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--feedback", nargs="*", default=[], help="Field-log exports: their verdicts as groups."
    )
    ap.add_argument(
        "--trust", action="append", default=[], help="Only feedback from releases this key signed."
    )
    args = ap.parse_args(argv)
    summary = build(args.docs, Path(args.out), args.seed, args.feedback, args.trust)
    print(json.dumps(summary, indent=2), file=sys.stderr)


if __name__ == "__main__":
    main()
