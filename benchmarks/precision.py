"""Answer quality, conversion agreement, size and speed of the embedded LLM per precision / quantisation.

    .venv/bin/python benchmarks/precision.py [--docs examples/docs] [--questions examples/questions.jsonl]

Exports one bundle per setting into a temporary folder and runs `outpost eval` on each.
Prints a Markdown table (docs/benchmarks.md keeps the last run).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = [
    ("int4", "rtn"),
    ("int4", "k_quant_mixed"),
    ("int8", "default"),
    ("fp32", "default"),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", default="examples/docs")
    ap.add_argument("--questions", default="examples/questions.jsonl")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    outpost = str(Path(sys.executable).with_name("outpost"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision, algo in SETTINGS:
            out = Path(tmp) / f"{precision}-{algo}"
            t = time.perf_counter()
            subprocess.run(
                [
                    outpost,
                    "export",
                    args.docs,
                    "--out",
                    str(out),
                    "--precision",
                    precision,
                    "--quant-algo",
                    algo,
                ],
                check=True,
                stderr=subprocess.DEVNULL,
            )
            export_s = time.perf_counter() - t
            manifest = json.loads((out / "bundle.json").read_text())
            model_mb = (
                sum(v["size"] for k, v in manifest["files"].items() if k.startswith("model/")) / 1e6
            )
            report = json.loads(
                subprocess.run(
                    [
                        outpost,
                        "eval",
                        str(out),
                        "-q",
                        args.questions,
                        "--json",
                        "--threads",
                        str(args.threads),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            )
            rows.append(
                (
                    precision,
                    algo,
                    model_mb,
                    export_s,
                    manifest["checks"]["conversion"]["top1_agreement"],
                    report["accuracy"],
                    report["refusal_rate"],
                    report["cited"],
                    report["median_ttft_s"],
                    report["median_tokens_per_s"],
                )
            )
            print(rows[-1], file=sys.stderr, flush=True)
    print(
        "| precision | method | model MB | export s | next-token agreement | accuracy | refusal | cited | TTFT s | tokens/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r[0]} | {r[1]} | {r[2]:.0f} | {r[3]:.0f} | {r[4]} | {r[5]:.2f} | {r[6]:.2f} | {r[7]:.2f} | {r[8]} | {r[9]} |"
        )


if __name__ == "__main__":
    main()
