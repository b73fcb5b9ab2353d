"""Typed errors. The library raises these; only the CLI turns them into `Error: ...`."""


def one_line(message: str) -> str:
    """Messages may quote multi-line text (a parser's report): an error line stays one line."""
    return " ".join(message.split())


class OutpostError(Exception):
    """Base class: a problem the user can fix. The message says what and how."""

    exit_code = 1


class UsageError(OutpostError):
    """A flag or argument that cannot work (exit code 2)."""

    exit_code = 2


class InputError(OutpostError):
    """Documents, data or questions that cannot be used."""


class BundleError(OutpostError):
    """A path that is not a usable bundle."""


class ModelError(OutpostError):
    """A base model, adapter or build step that failed."""


class LibraryError(ModelError):
    """onnxruntime's C library is missing or not the one runtime/ask/onnx_session.py was written
    for: the installation's problem, not a model file's."""
