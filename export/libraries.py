"""The build side's third-party libraries: check they are installed, quiet them, record versions."""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
from importlib import metadata

from outpost import __version__
from outpost.runtime.errors import OutpostError

# The modules each build command needs, by the extra that installs them.
EXTRAS = {
    "export": ("torch", "transformers", "sentence_transformers", "peft", "onnx", "pypdf"),
    "train": ("torch", "transformers", "peft", "accelerate", "yaml", "matplotlib"),
}
RECORDED = (
    "onnxruntime",
    "onnxruntime-genai",
    "usearch",
    "tokenizers",
    "torch",
    "transformers",
    "sentence-transformers",
    "peft",
    "numpy",
)


def require_extra(extra: str, command: str) -> None:
    """One line naming the extra to install when a build command runs on a device install.

    torch is imported (everything else builds on it, and a broken install shows here); the
    others are looked up without importing them, which would cost seconds before a usage error.
    """
    quiet_libraries()
    for name in EXTRAS[extra]:
        try:
            if name == "torch":
                importlib.import_module(name)
            elif importlib.util.find_spec(name) is None:
                raise ImportError(name)
        except ImportError:
            torch_first = "pip install torch==2.13.0 && " if name == "torch" else ""
            raise OutpostError(
                f"`outpost {command}` needs the [{extra}] extra ({name} is not installed): "
                f"{torch_first}pip install 'outpost-llm[{extra}]'"
            ) from None


def quiet_libraries() -> None:
    """Our progress lines replace the libraries' warnings and progress bars on stderr."""
    import logging
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.ERROR)
    for name in ("transformers", "sentence_transformers", "torch", "onnxruntime", "peft"):
        logging.getLogger(name).setLevel(logging.ERROR)


def versions() -> dict:
    found = {"python": platform.python_version(), "outpost": __version__}
    for name in RECORDED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found
