"""bundle.json as typed dataclasses: written by `outpost export`, read by everything else.

`Manifest.from_json` checks every field the runtime relies on (present, of the right type, and
every file path relative and inside the bundle) and raises a BundleError that names the field,
so a damaged or foreign manifest is one error line, never a KeyError. Sections that are records
of how the bundle was made (checks, calibration, quantisation settings) stay plain dicts, but
every key of them that the runtime or `info` reads is declared (a TypedDict: checked when
present, other keys kept as they are), so no part of a manifest is read unchecked.
"""

from __future__ import annotations

import json
import re
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import PurePosixPath

from outpost.runtime.errors import BundleError

T = typing.TypeVar("T")

MANIFEST = "bundle.json"
ADAPTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SCHEMA_VERSION = 1
DEFAULT_REFUSAL_P = 0.5  # decline when declining is more likely than answering
DEFAULT_WINDOWS, DEFAULT_RADIUS = 4, 1  # measured in docs/quality.md ("What the model reads")
DEFAULT_MIN_EVIDENCE = 0.55  # share of the question's weight the read passages must contain


class ConversionCheck(typing.TypedDict, total=False):
    """The conversion gate's record (export/llm/gate.py), as `info` reads it."""

    precision: str
    top1_agreement: float
    mean_kl: float
    perplexity_ratio: float
    passed: bool


class Checks(typing.TypedDict, total=False):
    conversion: ConversionCheck
    retrieval: dict
    eval: dict  # `export --questions`: the evaluation report (runtime/ask/evaluate.py)


class Languages(typing.TypedDict, total=False):
    """Chunks per language, runs [first chunk id, count, language], and the runs of chunks that
    also hold another language (export/documents/languages.py)."""

    main: str
    chunks: dict[str, int]
    runs: list[tuple[int, int, str]]
    also: dict[str, list[tuple[int, int]]]
    forced: bool  # `export --language` named the language: none was detected


@dataclass
class FileEntry:
    size: int
    sha256: str


@dataclass
class AdapterInfo:
    """An adapter chosen at run time (`ask --adapter NAME`), applied to the base in memory."""

    file: str  # the .onnx_adapter file, listed in `files` like every other
    source: str
    sha256: str  # of the PEFT weights it was made from
    rank: int
    alpha: float
    target_modules: list
    parameters: int
    # its gate (export/llm/gate.py)
    conversion: ConversionCheck = field(default_factory=ConversionCheck)


@dataclass
class ModelInfo:
    dir: str
    base: str
    source: str
    base_sha256: str
    parameters: int
    adapter: dict | None
    quantization: dict
    chat_template_sha256: str | None
    context_length: int
    type: str
    adapters: dict[str, AdapterInfo] = field(default_factory=dict)


@dataclass
class EmbedderInfo:
    id: str
    file: str
    tokenizer: str
    dim: int
    pooling: str
    normalize: bool
    max_tokens: int
    variant: str
    source_normalize: bool = True
    checks: dict = field(default_factory=dict)
    # The languages the embedder was trained on, from its model card (None: not known, or
    # multilingual); a question in another language is found by keyword search.
    languages: list[str] | None = None


@dataclass
class IndexBinding:
    """What the index was built with: the embedder file's hash, its dimension, normalisation."""

    sha256: str
    dim: int
    normalize: bool


@dataclass
class IndexInfo:
    file: str
    metric: str
    dtype: str
    count: int
    ndim: int
    embedder: IndexBinding
    recall_at_10: dict = field(default_factory=dict)
    min_recall: float = 0.0
    expansion_search: int = 128  # candidates the graph search visits (chosen at export)
    search: str = "hnsw"  # or "exact": no graph search reached the recall floor


@dataclass
class StoreInfo:
    file: str
    count: int
    fts: str = "fts5 unicode61"


@dataclass
class RankerInfo:
    """The learned line ranker the bundle carries (runtime/ask/rerank.py), its files listed in
    `files` like every other; how it was made and measured is its ranker.json."""

    dir: str
    model: str
    tokenizer: str
    sha256: str  # of the model file, as shipped in the outpost package
    held_out: dict = field(default_factory=dict)


@dataclass
class RetrievalInfo:
    top_k: int
    grounding_threshold: float
    hybrid: str = "rrf(dense, bm25)"
    calibration: dict = field(default_factory=dict)


@dataclass
class GenerationInfo:
    max_context: int
    max_new_tokens: int
    repetition_penalty: float = 1.0
    refusal_min_p: float = DEFAULT_REFUSAL_P  # runtime refusal gate (runtime/ask/generate.py)
    min_evidence: float = (
        DEFAULT_MIN_EVIDENCE  # decline below this evidence coverage (runtime/ask/terms.py, rank.py)
    )
    windows: int = DEFAULT_WINDOWS  # sentence windows the model reads (runtime/ask/rank.py)
    window_radius: int = DEFAULT_RADIUS  # sentences on each side of a window's best one


@dataclass
class Sources:
    root: str
    documents: list
    skipped: list


@dataclass
class Manifest:
    schema: int
    created: str
    libraries: dict
    model: ModelInfo
    embedder: EmbedderInfo
    chunker: dict
    index: IndexInfo
    store: StoreInfo
    retrieval: RetrievalInfo
    generation: GenerationInfo
    checks: Checks
    sources: Sources
    files: dict[str, FileEntry]
    size_bytes: int
    export_seconds: float | None = None
    build: dict = field(default_factory=dict)  # engine, and what --update kept
    # main language, chunks per language, runs [first chunk id, count, language] (export)
    languages: Languages = field(default_factory=Languages)
    ranker: RankerInfo | None = None  # bundles from before issue 29: the features alone

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, where: str = MANIFEST) -> Manifest:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BundleError(f"{where} is not valid JSON ({e}); copy the bundle again") from None
        if not isinstance(data, dict):
            raise BundleError(
                f"{where} holds a {type(data).__name__}, not an object; not a bundle manifest"
            )
        schema = data.get("schema")
        if schema != SCHEMA_VERSION:
            raise BundleError(
                f"{where}: schema {schema!r}, this outpost reads schema {SCHEMA_VERSION}; "
                "rebuild the bundle with this version of `outpost export`"
            )
        manifest = _parse(cls, data, "", where)
        _check_paths(manifest, where)
        _check_ranges(manifest, where)
        return manifest


def conversion_in_words(check: ConversionCheck | typing.Mapping[str, typing.Any]) -> str:
    """The conversion gate's record (export/llm/gate.py) as one line a user understands."""
    if "top1_agreement" not in check:
        return "not measured (a bundle from before the conversion check)"
    verdict = "passed" if check.get("passed") else "FAILED (shipped with --allow-degraded-model)"
    return (
        f"{check.get('precision', '?')} model picks the same next word as full precision "
        f"{check['top1_agreement']:.0%} of the time (KL {check['mean_kl']:.3f}, perplexity "
        f"{check['perplexity_ratio']:.2f}x); conversion check {verdict}"
    )


def section(cls: type[T], data: dict, where: str = MANIFEST) -> T:
    """One typed section (e.g. IndexInfo) from a plain dict, checked like the whole manifest."""
    return _parse(cls, data, "", where)


def _fail(where: str, name: str, problem: str) -> BundleError:
    return BundleError(f"{where}: field {name!r} {problem}; copy the bundle again or re-export it")


def _parse(cls: typing.Any, data: dict, prefix: str, where: str) -> typing.Any:
    hints = typing.get_type_hints(cls)
    values = {}
    for f in fields(cls):
        name = f"{prefix}{f.name}"
        if f.name not in data:
            if f.default is not MISSING or f.default_factory is not MISSING:
                continue
            raise _fail(where, name, "is missing")
        values[f.name] = _value(hints[f.name], data[f.name], name, where)
    return cls(**values)


def _value(kind: typing.Any, value: typing.Any, name: str, where: str) -> typing.Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        kind = next(k for k in options if k is not type(None))
        origin = typing.get_origin(kind)
    if is_dataclass(kind):
        if not isinstance(value, dict):
            raise _fail(where, name, f"must be an object, not {_describe(value)}")
        return _parse(kind, value, name + ".", where)
    if typing.is_typeddict(kind):
        if not isinstance(value, dict):
            raise _fail(where, name, f"must be an object, not {_describe(value)}")
        hints = typing.get_type_hints(kind)
        return {
            k: _value(hints[k], v, f"{name}.{k}", where) if k in hints else v
            for k, v in value.items()
        }
    if origin is dict and typing.get_args(kind):
        if not isinstance(value, dict):
            raise _fail(where, name, f"must be an object, not {_describe(value)}")
        _, item = typing.get_args(kind)
        return {k: _value(item, v, f"{name}[{k!r}]", where) for k, v in value.items()}
    if origin is list and typing.get_args(kind):
        if not isinstance(value, list):
            raise _fail(where, name, f"must be a list, not {_describe(value)}")
        (item,) = typing.get_args(kind)
        return [_value(item, v, f"{name}[{i}]", where) for i, v in enumerate(value)]
    if origin is tuple:  # a fixed-length row, kept as the JSON list it is
        items = typing.get_args(kind)
        if not isinstance(value, list) or len(value) != len(items):
            raise _fail(where, name, f"must be a list of {len(items)}, not {_describe(value)}")
        return [_value(k, v, f"{name}[{i}]", where) for i, (k, v) in enumerate(zip(items, value))]
    expected = _TYPES[origin or kind]
    if isinstance(value, bool) and kind is not bool or not isinstance(value, expected):
        raise _fail(where, name, f"must be {_NAMES[origin or kind]}, not {_describe(value)}")
    return float(typing.cast(float, value)) if kind is float else value  # int or float, checked


_TYPES: dict[type, type | tuple[type, ...]] = {
    int: int,
    float: (int, float),
    str: str,
    bool: bool,
    dict: dict,
    list: list,
}
_NAMES = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    dict: "an object",
    list: "a list",
}


def _describe(value: object) -> str:
    return "null" if value is None else f"{type(value).__name__} {json.dumps(value)[:40]}"


def safe_relative(path: str) -> bool:
    """A manifest path: relative, '/'-separated, normalised, no '..', no empty or '.' parts."""
    if not path or "\\" in path or "\x00" in path or path.startswith("/"):
        return False
    parts = path.split("/")
    return all(p not in ("", ".", "..") for p in parts) and PurePosixPath(path).as_posix() == path


def _check_paths(m: Manifest, where: str) -> None:
    for rel in m.files:
        if not safe_relative(rel) or rel == MANIFEST:
            raise BundleError(
                f"{where}: file path {rel!r} is not a plain relative path inside the bundle; "
                "refusing the bundle"
            )
    refs = {
        "model.dir": m.model.dir,
        "embedder.file": m.embedder.file,
        "embedder.tokenizer": m.embedder.tokenizer,
        "index.file": m.index.file,
        "store.file": m.store.file,
    }
    if m.ranker is not None:
        refs["ranker.model"] = f"{m.ranker.dir}/{m.ranker.model}"
        refs["ranker.tokenizer"] = f"{m.ranker.dir}/{m.ranker.tokenizer}"
    for name, adapter in m.model.adapters.items():
        if not ADAPTER_NAME.fullmatch(name):
            raise _fail(where, f"model.adapters[{name!r}]", "is not a valid adapter name")
        refs[f"model.adapters[{name!r}].file"] = adapter.file
    for name, rel in refs.items():
        if not safe_relative(rel):
            raise _fail(where, name, f"({rel!r}) must be a plain relative path inside the bundle")
        if name != "model.dir" and rel not in m.files:
            raise _fail(where, name, f"names {rel!r}, which the manifest does not list")


def _check_ranges(m: Manifest, where: str) -> None:
    """Values the runtime computes with, inside the ranges the export can write."""
    g, r, i = m.generation, m.retrieval, m.index
    limits = {
        "generation.max_context": (g.max_context, 64, 1 << 20),
        "generation.max_new_tokens": (g.max_new_tokens, 1, 1 << 20),
        "generation.repetition_penalty": (g.repetition_penalty, 0.5, 10.0),
        "generation.refusal_min_p": (g.refusal_min_p, 0.0, 1.0),
        "generation.min_evidence": (g.min_evidence, 0.0, 1.0),
        "generation.windows": (g.windows, 1, 64),
        "generation.window_radius": (g.window_radius, 0, 16),
        "retrieval.top_k": (r.top_k, 1, 256),
        "retrieval.grounding_threshold": (r.grounding_threshold, -1.0, 1.0),
        "index.count": (i.count, 0, 1 << 40),
        "index.ndim": (i.ndim, 1, 1 << 16),
        "index.expansion_search": (i.expansion_search, 1, 1 << 16),
        "store.count": (m.store.count, 0, 1 << 40),
        "embedder.dim": (m.embedder.dim, 1, 1 << 16),
        "embedder.max_tokens": (m.embedder.max_tokens, 1, 1 << 20),
        "model.context_length": (m.model.context_length, 1, 1 << 24),
    }
    for name, (value, low, high) in limits.items():
        if not low <= value <= high:
            raise _fail(where, name, f"is {value}, outside {low}..{high}")
    if g.max_new_tokens >= g.max_context:
        raise _fail(where, "generation.max_new_tokens", "must be less than generation.max_context")
    for rel, entry in m.files.items():
        if entry.size < 0 or len(entry.sha256) != 64:
            raise _fail(where, f"files[{rel!r}]", "needs a size >= 0 and a 64-digit sha256")
    if i.search not in ("hnsw", "exact"):
        raise _fail(where, "index.search", f"is {i.search!r}, not 'hnsw' or 'exact'")
