"""Compare two `outpost eval --json` reports key by key, the timing keys left out: what a change
that should not change answers (a refactor, a speed-up) is checked with.

    outpost eval BUNDLE --questions QA --threads 2 --json > before.json   # on the old commit
    outpost eval BUNDLE --questions QA --threads 2 --json > after.json    # on the new one
    python benchmarks/eval_diff.py before.json after.json

Prints each (question id, key) that differs and a count; exits 1 on any difference. Generation
is greedy, so rows are reproducible at a fixed --threads.
"""

from __future__ import annotations

import json
import sys

TIMING = {
    "timings",
    "retrieval_s",
    "ttft_s",
    "first_shown_s",
    "tokens_per_s",
    "median_first_shown_s",
    "median_ttft_s",
    "median_tokens_per_s",
}


def strip(value: object) -> object:
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def differences(a: dict, b: dict) -> list[tuple[str, str]]:
    """(where, key) for each value that differs: "report" for the report's own keys."""
    keys = (set(a) | set(b)) - {"rows"} - TIMING
    found = [("report", k) for k in sorted(keys) if strip(a.get(k)) != strip(b.get(k))]
    ids_a, ids_b = [r["id"] for r in a["rows"]], [r["id"] for r in b["rows"]]
    if ids_a != ids_b:
        return [*found, ("report", "rows (not the same questions)")]
    for x, y in zip(a["rows"], b["rows"]):
        keys = (set(x) | set(y)) - TIMING
        found += [(x["id"], k) for k in sorted(keys) if strip(x.get(k)) != strip(y.get(k))]
    return found


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: python benchmarks/eval_diff.py BEFORE.json AFTER.json")
    a, b = (json.loads(open(p, encoding="utf-8").read()) for p in sys.argv[1:3])
    found = differences(a, b)
    for where, key in found:
        print(where, key)
    print(f"{len(a['rows'])} rows, {len(found)} differences (timing keys left out)")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
