"""Outpost: offline, cited answers from an organisation's manuals on CPU-only devices.

One import package with three parts, each its own folder in the repository:

- `outpost.runtime` (runtime/): what ships to devices; imports no torch, transformers, peft
  or sentence-transformers.
- `outpost.export` (export/): documents and a base model -> a bundle (build side).
- `outpost.trainer` (trainer/): PEFT adapters (build side).

`outpost.cli` is the command line; build commands join it through the `outpost.commands`
entry-point group, so the device install never names them.
"""

__version__ = "0.1.0"
