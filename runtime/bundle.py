"""Open a bundle: read bundle.json and check that every file it lists is there.

A bundle is a folder:
    bundle.json        manifest (schema, versions, settings, checks, size + sha256 of every file)
    model/             onnxruntime-genai model folder (genai_config.json, model.onnx, tokenizer)
    embedder/          model.onnx (pooling and normalisation inside the graph) + tokenizer.json
    index.usearch      usearch index over the chunk embeddings
    chunks.sqlite      chunk store (text, source, heading, offsets) with an FTS5 table
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import BundleError

MANIFEST = "bundle.json"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict

    def file(self, relative: str) -> Path:
        return self.path / relative

    @property
    def model_dir(self) -> Path:
        return self.path / self.manifest["model"]["dir"]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def open_bundle(path: str | Path, verify_hashes: bool = False, check_sizes: bool = True) -> Bundle:
    """Read the manifest and check sizes (and, if asked, sha256) of every listed file."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root} is not a folder; pass a bundle made by `outpost export`")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(
            f"{root} is not a bundle (no {MANIFEST}); build one with `outpost export`"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise BundleError(f"{manifest_path} is unreadable ({e}); rebuild the bundle") from None
    schema = manifest.get("schema")
    if schema != SCHEMA_VERSION:
        raise BundleError(
            f"{manifest_path}: schema {schema!r}, this outpost reads schema {SCHEMA_VERSION}; "
            "rebuild the bundle with this version of `outpost export`"
        )
    problems = []
    for rel, meta in sorted(manifest.get("files", {}).items() if check_sizes else []):
        f = root / rel
        if not f.is_file():
            problems.append(f"{rel} is missing")
        elif f.stat().st_size != meta["size"]:
            problems.append(f"{rel} has {f.stat().st_size} bytes, expected {meta['size']}")
        elif verify_hashes and sha256_file(f) != meta["sha256"]:
            problems.append(f"{rel} has changed (sha256 mismatch)")
    if problems:
        raise BundleError(
            f"bundle {root} is damaged: {'; '.join(problems)}; copy the bundle again or re-export it"
        )
    return Bundle(root, manifest)
