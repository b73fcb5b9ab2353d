"""Open a bundle: read bundle.json (runtime/manifest.py) and check the files it lists.

A bundle is a folder:
    bundle.json        manifest (schema, versions, settings, checks, size + sha256 of every file)
    bundle.sig         optional Ed25519 signature over bundle.json (runtime/verify.py)
    model/             onnxruntime-genai model folder (genai_config.json, model.onnx, tokenizer)
    embedder/          model.onnx (pooling and normalisation inside the graph) + tokenizer.json
    index.usearch      usearch index over the chunk embeddings
    chunks.sqlite      chunk store (text, source, heading, offsets) with an FTS5 table
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runtime.errors import BundleError
from runtime.files import sha256_file
from runtime.manifest import MANIFEST, Manifest

SIGNATURE = "bundle.sig"
NOT_LISTED = {MANIFEST, SIGNATURE}


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: Manifest

    def file(self, relative: str) -> Path:
        return self.path / relative

    @property
    def model_dir(self) -> Path:
        return self.path / self.manifest.model.dir


@dataclass(frozen=True)
class Problem:
    path: str
    kind: str  # missing | changed | unexpected | binding | signature
    detail: str

    def __str__(self) -> str:
        if self.kind == "missing":
            return f"{self.path} is missing"
        if self.kind == "changed":
            return f"{self.path} has changed ({self.detail})"
        return f"{self.path}: {self.kind} ({self.detail})"


def check_files(
    root: Path, manifest: Manifest, hashes: bool = True, unexpected: bool = True
) -> list[Problem]:
    """Every listed file present with its size (and sha256); unlisted files reported."""
    problems = []
    for rel, entry in sorted(manifest.files.items()):
        f = root / rel
        if not f.is_file() or f.is_symlink():
            problems.append(
                Problem(rel, "missing", "listed in bundle.json, not on disk as a plain file")
            )
        elif (size := f.stat().st_size) != entry.size:
            problems.append(Problem(rel, "changed", f"{size} bytes, expected {entry.size}"))
        elif hashes and sha256_file(f) != entry.sha256:
            problems.append(Problem(rel, "changed", "sha256 differs from bundle.json"))
    if unexpected:
        for f in sorted(root.rglob("*")):
            rel = f.relative_to(root).as_posix()
            if (
                (f.is_file() or f.is_symlink())
                and rel not in manifest.files
                and rel not in NOT_LISTED
            ):
                problems.append(Problem(rel, "unexpected", "not listed in bundle.json"))
    return problems


def read_manifest(root: Path) -> Manifest:
    path = root / MANIFEST
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise BundleError(f"{path} is unreadable ({e.strerror}); copy the bundle again") from None
    return Manifest.from_json(raw, str(path))


def open_bundle(path: str | Path, check_sizes: bool = True) -> Bundle:
    """Read the manifest and (by default) check that every listed file has its size."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root} is not a folder; pass a bundle made by `outpost export`")
    if not (root / MANIFEST).is_file():
        raise BundleError(
            f"{root} is not a bundle (no {MANIFEST}); build one with `outpost export`"
        )
    manifest = read_manifest(root)
    if check_sizes:
        problems = check_files(root, manifest, hashes=False, unexpected=False)
        if problems:
            raise BundleError(
                f"bundle {root} is damaged: {'; '.join(map(str, problems))}; "
                "copy the bundle again or re-export it"
            )
    return Bundle(root, manifest)
