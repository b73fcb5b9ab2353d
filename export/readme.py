"""The README's option tables, made from the commands' settings (runtime/settings.py).

    .venv/bin/python -m outpost.export.readme           # rewrite README.md's tables in place
    .venv/bin/python -m outpost.export.readme --check   # exit 1 when they have drifted

Each table sits between `<!-- options: NAME -->` and `<!-- /options -->` in README.md;
tests/test_layout.py fails when one differs from what the settings declare.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from outpost.export.cli import EXPORT_ENV, KIT_ENV
from outpost.export.config import ChunkConfig, ExportConfig, KitConfig, LlmConfig
from outpost.runtime.config import (
    AskConfig,
    EvalConfig,
    FeedbackConfig,
    InstallConfig,
    RecordConfig,
    RollbackConfig,
    ServeConfig,
    VerifyConfig,
)
from outpost.runtime.files import write_atomic
from outpost.runtime.settings import table
from outpost.trainer.config import TRAIN_ENV, TrainConfig

README = Path(__file__).resolve().parents[1] / "README.md"
COMMANDS = {
    "ask": ((AskConfig,), "OUTPOST_"),  # ask, chat and eval
    "eval": ((EvalConfig,), "OUTPOST_"),  # eval's own, besides ask's
    "record": ((RecordConfig,), "OUTPOST_"),  # ask's and chat's --log
    "feedback": ((FeedbackConfig,), "OUTPOST_"),  # feedback export, info, rate, wipe
    "serve": ((ServeConfig,), "OUTPOST_"),
    "verify": ((VerifyConfig,), "OUTPOST_"),
    "install": ((InstallConfig,), "OUTPOST_"),
    "rollback": ((RollbackConfig,), "OUTPOST_"),
    "export": ((ExportConfig, LlmConfig, ChunkConfig), EXPORT_ENV),
    "kit": ((KitConfig,), KIT_ENV),
    "train": ((TrainConfig,), TRAIN_ENV),
}
_BLOCK = re.compile(r"(<!-- options: (\w+) -->\n)(.*?)(<!-- /options -->)", re.S)


def render(text: str) -> str:
    """`text` with every options block replaced by its command's table."""

    def fill(m: re.Match) -> str:
        classes, prefix = COMMANDS[m.group(2)]
        return f"{m.group(1)}{table(*classes, prefix=prefix)}\n{m.group(4)}"

    return _BLOCK.sub(fill, text)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="Exit 1 when README.md has drifted.")
    args = ap.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    wanted = render(text)
    if args.check:
        sys.exit(0 if wanted == text else 1)
    if wanted != text:
        write_atomic(README, wanted)
        print(f"rewrote the option tables in {README}", file=sys.stderr)


if __name__ == "__main__":
    main()
