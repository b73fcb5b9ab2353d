"""What the build commands take: `ExportConfig` (with `LlmConfig` and `ChunkConfig`) for
`outpost export`, `KitConfig` for `outpost kit`.

Each setting is declared once, as a field (runtime/settings.py): the command-line options,
their `OUTPOST_EXPORT_*` / `OUTPOST_KIT_*` variables and the README's option tables are made
from these fields. This module imports nothing heavy: a device without the build extras can
still list the commands and be told which extra to install.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from outpost.export.llm.base import EMBEDDED_LLM
from outpost.runtime.bundle.manifest import ADAPTER_NAME
from outpost.runtime.config import trusted_keys
from outpost.runtime.errors import InputError, UsageError
from outpost.runtime.language.detect import LANGUAGES
from outpost.runtime.settings import setting

EMBEDDED_EMBEDDER = "embedded:all-MiniLM-L6-v2"
PRECISIONS = ("int4", "int8", "fp32")
QUANT_ALGOS = ("default", "rtn", "k_quant", "k_quant_last", "k_quant_mixed")
EMBEDDER_PRECISIONS = ("fp32", "int8")
ENGINES = ("local", "ray")
ARCHES = ("x86_64", "aarch64")
PYTHONS = ("3.11", "3.12", "3.13")
MIN_GLIBC = 28  # every runtime wheel is manylinux_2_28 or older (onnxruntime-genai is 2_28)
DEFAULT_QUESTION = "What do these manuals cover?"


@dataclass(kw_only=True)
class ChunkConfig:
    target_chars: int = setting(
        900,
        "Target chunk size in characters.",
        flag="--chunk-chars",
        old_env="OUTPOST_EXPORT_TARGET_CHARS",  # renamed (issue 30); read for one more release
    )
    max_chars: int = 1400
    overlap_chars: int = setting(
        150,
        "Overlap between chunks of one section.",
        flag="--chunk-overlap",
        old_env="OUTPOST_EXPORT_OVERLAP_CHARS",
    )
    min_chars: int = 200
    pdf_text: str = setting(
        "pypdf",
        "How PDF text is read: pypdf (default), or poppler's pdftotext with the outline's "
        "headings, running headers dropped and ruled tables as rows (docs/decisions.md, "
        '"PDF text").',
        choices=("pypdf", "poppler"),
    )

    def check(self) -> None:
        if self.target_chars < 100:
            raise UsageError("--chunk-chars must be at least 100")
        if not 0 <= self.overlap_chars < self.target_chars // 2:
            raise UsageError("--chunk-overlap must be between 0 and half of --chunk-chars")
        self.max_chars = max(self.max_chars, self.target_chars)

    def as_dict(self) -> dict:
        return asdict(self)


def _named(value: str) -> bool:
    """NAME=RUN_DIR (an adapter chosen at run time) rather than a folder to merge."""
    name, sep, _ = value.partition("=")
    return bool(sep) and bool(ADAPTER_NAME.fullmatch(name)) and not Path(value).exists()


@dataclass(kw_only=True)
class LlmConfig:
    base: str | None = setting(
        None,
        "Base model: a Hugging Face folder, a .gguf file or a hub id [default: the "
        f"adapter's base, else {EMBEDDED_LLM}].",
        env="OUTPOST_BASE",
    )
    adapter: list[str] = setting(
        [],
        "RUN_DIR: a PEFT adapter (or `outpost train` run folder) merged before conversion; "
        "NAME=RUN_DIR (repeatable): an adapter chosen at run time (`ask --adapter NAME`).",
        multiple=True,
    )
    precision: str = setting("int4", "Weights of the exported model.", choices=PRECISIONS)
    quant_algo: str = setting("k_quant_mixed", "int4/int8 method: " + ", ".join(QUANT_ALGOS) + ".")
    block_size: int = 32
    accuracy_level: int = 4
    allow_degraded_model: bool = setting(
        False, "Ship a model that fails the conversion check (its numbers are still recorded)."
    )

    @property
    def merged(self) -> str | None:
        """The adapter merged into the base (a plain RUN_DIR), if any."""
        plain = [a for a in self.adapter if not _named(a)]
        return plain[0] if plain else None

    @property
    def switchable(self) -> dict[str, str]:
        """Adapters chosen at run time: {NAME: RUN_DIR}."""
        return dict(a.split("=", 1) for a in self.adapter if _named(a))

    def check(self) -> None:
        plain = [a for a in self.adapter if not _named(a)]
        if len(plain) > 1:
            raise UsageError(
                "--adapter RUN_DIR merges one adapter; give the others as --adapter NAME=RUN_DIR"
            )
        if plain and self.switchable:
            raise UsageError(
                "--adapter: merge one adapter (RUN_DIR) or switch between several "
                "(NAME=RUN_DIR), not both"
            )
        names = [a.split("=", 1)[0] for a in self.adapter if _named(a)]
        if len(set(names)) != len(names):
            raise UsageError("--adapter NAME=RUN_DIR: each NAME once")
        for a in self.adapter:
            folder = Path(a.split("=", 1)[1] if _named(a) else a)
            if not (folder / "adapter_config.json").is_file():
                raise InputError(
                    f"--adapter {a}: {folder} has no adapter_config.json; pass a PEFT adapter "
                    "or `outpost train` run folder"
                )
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if self.quant_algo not in QUANT_ALGOS:
            raise UsageError(f"--quant-algo must be one of {', '.join(QUANT_ALGOS)}")
        if self.block_size not in (16, 32, 64, 128, 256):
            raise UsageError(  # a field for library callers, not a flag
                f"LlmConfig.block_size must be 16, 32, 64, 128 or 256, not {self.block_size}"
            )


@dataclass(kw_only=True)
class ExportConfig:
    docs: list[str]
    out: str = setting("", "Bundle folder to write.", alias="-o", path=True, required=True)
    llm: LlmConfig = field(default_factory=LlmConfig)
    embedder: str = setting(EMBEDDED_EMBEDDER, "sentence-transformers model folder or hub id.")
    embedder_precision: str = setting(
        "fp32",
        "int8: 1.5x faster, 65 MB less memory; kept only if it retrieves as fp32 does on DOCS.",
        choices=EMBEDDER_PRECISIONS,
    )
    chunk: ChunkConfig = field(default_factory=ChunkConfig)
    top_k: int = setting(4, "Passages per question.")
    max_context: int = setting(1536, "Token budget for prompt + answer on the device.")
    max_new_tokens: int = setting(200, "Longest answer in tokens.")
    repetition_penalty: float = 1.05
    questions: str | None = setting(
        None, "Questions file: run `outpost eval` and store the report in bundle.json.", path=True
    )
    exclude: list[str] = setting(
        [], "Glob of files to leave out (path or name); repeatable.", multiple=True
    )
    language: str | None = setting(
        None,
        "Language of every document (" + ", ".join(LANGUAGES) + ") instead of detecting each "
        "chunk's.",
        choices=LANGUAGES,
    )
    engine: str = setting(
        "local",
        "Where documents are read, chunked and embedded: here, or on Ray "
        "(pip install 'outpost-llm[scale]').",
        choices=ENGINES,
    )
    address: str | None = setting(
        None, "Ray cluster to join (HOST:PORT) with --engine ray [default: start a local one]."
    )
    update: str | None = setting(
        None,
        "Earlier bundle of these documents: unchanged ones keep its chunks and vectors.",
        path=True,
    )
    sign: str | None = setting(
        None, "Ed25519 private key (from `outpost keygen`) to sign the bundle.", path=True
    )
    trust: list[str] = trusted_keys(
        "Public key the --update bundle must be signed by (file or folder of .pub files); "
        "with --sign, the signing key's own is trusted too."
    )
    ranker: bool = setting(
        True, "Ship the learned line ranker in the bundle (off: lines ranked by features alone)."
    )
    force: bool = setting(False, "Replace an existing bundle at --out.")
    strict: bool = setting(False, "Fail when any file is skipped.")

    def check(self) -> None:
        self.llm.check()
        self.chunk.check()
        if not self.docs:
            raise UsageError("give at least one documents folder or file")
        for d in self.docs:
            if not Path(d).exists():
                raise InputError(f"{d} does not exist; pass folders or files of documents")
        if self.embedder_precision not in ("fp32", "int8"):
            raise UsageError("--embedder-precision must be fp32 or int8")
        if self.top_k < 1:
            raise UsageError("--top-k must be at least 1")
        if self.address and self.engine != "ray":
            raise UsageError("--address names a Ray cluster; add --engine ray")
        if self.update and not (Path(self.update) / "bundle.json").is_file():
            raise InputError(
                f"--update {self.update}: no bundle.json there; pass the bundle to update"
            )
        if self.max_new_tokens < 1 or self.max_new_tokens >= self.max_context:
            raise UsageError("--max-new-tokens must be at least 1 and below --max-context")
        out = Path(self.out)
        for parent in [out, *out.parents]:
            if parent.exists() and not parent.is_dir():
                raise InputError(
                    f"--out {out}: {parent} is a file, not a folder; choose another --out"
                )
        here = out.absolute().resolve()
        for d in self.docs:
            src = Path(d).absolute().resolve()
            if here == src or here.is_relative_to(src) or src.is_relative_to(here):
                raise InputError(
                    f"--out {out} and the documents {d} overlap: the bundle would be written into "
                    "what it reads (or replace it); choose an --out outside the documents"
                )
        if out.exists() and not self.force:
            raise InputError(f"{out} already exists; pass --force to replace it")
        if out.exists():
            from outpost.export.bundle import check_replaceable

            check_replaceable(out)
        if self.questions:
            from outpost.runtime.ask.evaluate import load_questions

            load_questions(self.questions)  # a bad questions file fails before any work
        if self.sign:
            from outpost.export.ship.sign import signer_of

            signer_of(Path(self.sign))  # a FIFO, a .pub or a bad key fails before any work


@dataclass(kw_only=True)
class KitConfig:
    out: str = setting("", "Kit folder to write.", alias="-o", path=True, required=True)
    platform: str = setting(
        "manylinux_2_28_x86_64",
        "The device's platform: "
        "manylinux_2_28_x86_64 or manylinux_2_28_aarch64 (2_N: its glibc 2.N).",
    )
    python: str = setting("3.11", "The device's Python (3.11-3.13).")
    bundle: str | None = setting(None, "Bundle to put in the kit (packed and verified).", path=True)
    trust: str | None = setting(
        None, "Public key the device trusts; the bundle must be signed by it.", path=True
    )
    sign: str | None = setting(
        None,
        "Private key (from `outpost keygen`) to sign kit.json with, the key of --trust; "
        "install.sh checks the signature before it installs anything.",
        path=True,
    )
    question: str = setting(DEFAULT_QUESTION, "The question install.sh asks as its check.")
    full: bool = setting(False, "Keep every dependency pip resolves (no pruning).")
    force: bool = setting(False, "Replace an existing kit at --out.")

    @property
    def arch(self) -> str:
        """x86_64 or aarch64 from manylinux_2_N_ARCH ("" when the tag has no such shape)."""
        parts = self.platform.split("_")
        return "_".join(parts[3:]) if self.platform.startswith("manylinux_2_") else ""

    @property
    def glibc(self) -> int:
        """N of manylinux_2_N_ARCH: the device's glibc minor version (0 when not a number)."""
        part = self.platform.split("_")[2:3]
        return int(part[0]) if part and part[0].isdigit() else 0

    def check(self) -> None:
        if self.arch not in ARCHES:
            raise UsageError(
                f"--platform {self.platform!r}: use manylinux_2_28_x86_64 or manylinux_2_28_aarch64 "
                "(manylinux_2_N_ARCH with the device's glibc 2.N)"
            )
        if not self.glibc:
            raise UsageError(f"--platform {self.platform!r}: 2_N must name a glibc, e.g. 2_28")
        if self.glibc < MIN_GLIBC:
            raise UsageError(
                f"--platform {self.platform}: the runtime's wheels need glibc 2.{MIN_GLIBC} or newer "
                "(onnxruntime-genai publishes manylinux_2_28 only)"
            )
        if self.python not in PYTHONS:
            raise UsageError(
                f"--python must be one of {', '.join(PYTHONS)} (onnxruntime has no cp310 wheels)"
            )
        if self.bundle and not (Path(self.bundle) / "bundle.json").is_file():
            raise InputError(f"--bundle {self.bundle}: no bundle.json there; pass a bundle folder")
        if self.bundle:
            out, src = Path(self.out).absolute().resolve(), Path(self.bundle).absolute().resolve()
            if out == src or out.is_relative_to(src) or src.is_relative_to(out):
                raise InputError(
                    f"--out {self.out} and --bundle {self.bundle} overlap: the kit would be written "
                    "into what it packs; choose an --out outside the bundle"
                )
        if self.sign and not self.trust:
            raise UsageError(
                f"--sign {self.sign} needs --trust with the same key's .pub: the device checks "
                "the kit's signature with it"
            )
        if not self.question.strip():
            raise UsageError("--question must not be empty")

    @property
    def platforms(self) -> list[str]:
        """Every tag a device with this glibc accepts (pip matches tags exactly)."""
        tags = [f"manylinux_2_{n}_{self.arch}" for n in range(self.glibc, 16, -1)]
        return tags + [f"manylinux2014_{self.arch}"]
