"""Ask a bundle's model a few general questions directly (no passages, no grounding threshold),
to check that fine-tuning on manuals did not break its general answers.

    .venv/bin/python benchmarks/general.py BUNDLE [BUNDLE ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

from outpost.runtime.ask.generate import GenerationSettings, Generator
from outpost.runtime.bundle.open import open_bundle

QUESTIONS = [
    "What is the capital of France?",
    "How many days are there in a week?",
    "What should you do before opening an electrical cabinet?",
]


def main() -> None:
    for path in sys.argv[1:]:
        bundle = open_bundle(Path(path))
        generator = Generator(bundle.model_dir)
        print(f"## {path} ({'adapter' if bundle.manifest.model.adapter else 'base'})")
        for q in QUESTIONS:
            messages = [{"role": "user", "content": q}]
            text = generator.run(messages, GenerationSettings(max_new_tokens=48)).complete().text
            print(f"- {q} -> {' '.join(text.split())}")


if __name__ == "__main__":
    main()
