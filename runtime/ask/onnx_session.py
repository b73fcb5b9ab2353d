"""A minimal ONNX Runtime session over the library's C API, with ctypes.

The onnxruntime wheel carries its C library (`capi/libonnxruntime.so*`, which onnxruntime-genai
loads too) beside a 30 MB Python extension that statically links a second copy of the runtime.
The embedder and the ranker need only a CPU session, so the device runs them through the
library and never imports the `onnxruntime` package: `Session(path).run({"x": array})`.

Run on one session may be called from several threads at once: the C API allows it, ctypes
releases the GIL for each call, and a run keeps its state in local variables.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from outpost.runtime.errors import LibraryError, ModelError, one_line

# The lowest OrtApi version holding every function below: AddSessionConfigEntry (130) came with
# version 5, the rest with version 1. A newer library serves older versions unchanged.
ORT_API_VERSION = 5

_P, _SIZE, _INT = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int
_OUT, _I64S, _NAMES = (ctypes.POINTER(t) for t in (_P, ctypes.c_int64, ctypes.c_char_p))

# Positions in `struct OrtApi`, counted from include/onnxruntime/core/session/onnxruntime_c_api.h
# at upstream commit 3d926ac6ed1f (2025-11-01, 1.24.0 in development: the newest that could be
# read here; v1.22.2's header gives the same numbers) and checked against the static_asserts in
# onnxruntime/core/session/onnxruntime_c_api.cc (ReleaseCustomOpDomain 101, ReleaseModelMetadata
# 118, ReleaseAvailableProviders 126, ...). OrtApi only grows at its end. Name: (index, returns,
# arguments); a returned pointer is an OrtStatus*, NULL for success.
_FUNCTIONS: dict[str, tuple[int, Any, list[Any]]] = {
    "GetErrorCode": (1, _INT, [_P]),
    "GetErrorMessage": (2, ctypes.c_char_p, [_P]),
    "CreateEnv": (3, _P, [_INT, ctypes.c_char_p, _OUT]),
    "CreateSession": (7, _P, [_P, ctypes.c_char_p, _P, _OUT]),
    "Run": (9, _P, [_P, _P, _NAMES, _OUT, _SIZE, _NAMES, _SIZE, _OUT]),
    "CreateSessionOptions": (10, _P, [_OUT]),
    "DisableCpuMemArena": (19, _P, [_P]),
    "SetSessionLogSeverityLevel": (22, _P, [_P, _INT]),
    "SetSessionGraphOptimizationLevel": (23, _P, [_P, _INT]),
    "SetIntraOpNumThreads": (24, _P, [_P, _INT]),
    "SetInterOpNumThreads": (25, _P, [_P, _INT]),
    "SessionGetInputCount": (30, _P, [_P, ctypes.POINTER(_SIZE)]),
    "SessionGetOutputCount": (31, _P, [_P, ctypes.POINTER(_SIZE)]),
    "SessionGetOutputTypeInfo": (34, _P, [_P, _SIZE, _OUT]),
    "SessionGetInputName": (36, _P, [_P, _SIZE, _P, _OUT]),
    "SessionGetOutputName": (37, _P, [_P, _SIZE, _P, _OUT]),
    "CreateTensorWithDataAsOrtValue": (49, _P, [_P, _P, _SIZE, _I64S, _SIZE, _INT, _OUT]),
    "GetTensorMutableData": (51, _P, [_P, _OUT]),
    "CastTypeInfoToTensorInfo": (55, _P, [_P, _OUT]),
    "GetTensorElementType": (60, _P, [_P, ctypes.POINTER(_INT)]),
    "GetDimensionsCount": (61, _P, [_P, ctypes.POINTER(_SIZE)]),
    "GetDimensions": (62, _P, [_P, _I64S, _SIZE]),
    "GetTensorTypeAndShape": (65, _P, [_P, _OUT]),
    "CreateCpuMemoryInfo": (69, _P, [_INT, _INT, _OUT]),
    "AllocatorFree": (76, _P, [_P, _P]),
    "GetAllocatorWithDefaultOptions": (78, _P, [_OUT]),
    "ReleaseStatus": (93, None, [_P]),
    "ReleaseSession": (95, None, [_P]),
    "ReleaseValue": (96, None, [_P]),
    "ReleaseTypeInfo": (98, None, [_P]),
    "ReleaseTensorTypeAndShapeInfo": (99, None, [_P]),
    "ReleaseSessionOptions": (100, None, [_P]),
    "AddSessionConfigEntry": (130, _P, [_P, ctypes.c_char_p, ctypes.c_char_p]),
}
_LOG_ERROR = 3  # OrtLoggingLevel: onnxruntime-genai's environment uses it too (one per process)
_INVALID_ARGUMENT = 2  # OrtErrorCode
_ARENA_ALLOCATOR, _MEM_TYPE_DEFAULT = 1, 0  # OrtAllocatorType, OrtMemType
# ONNXTensorElementDataType <-> numpy
_TO_ONNX = {
    np.dtype(name): code
    for name, code in [("float32", 1), ("uint8", 2), ("int8", 3), ("int32", 6), ("int64", 7)]
    + [("bool", 9), ("float16", 10), ("float64", 11)]
}
_TO_NUMPY = {code: dtype for dtype, code in _TO_ONNX.items()}


class _ApiBase(ctypes.Structure):
    _fields_ = [
        ("GetApi", ctypes.CFUNCTYPE(_P, ctypes.c_uint32)),
        ("GetVersionString", ctypes.CFUNCTYPE(ctypes.c_char_p)),
    ]


class _Api:
    """The OrtApi functions by name, and the process's one environment, CPU memory description
    and default allocator (read-only once made, so shared by every session and thread)."""

    def __init__(self, path: Path):
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as e:
            raise LibraryError(one_line(f"cannot load onnxruntime ({path}): {e}")) from None
        lib.OrtGetApiBase.restype = ctypes.POINTER(_ApiBase)
        base = lib.OrtGetApiBase().contents
        self.path, self.version = path, (base.GetVersionString() or b"").decode(errors="replace")
        table = base.GetApi(ORT_API_VERSION) if re.match(r"\d+\.\d+", self.version) else None
        what = f"onnxruntime's library {path} ({self.version!r}) does not match this module"
        if not table:
            raise LibraryError(f"{what}: it has no C API version {ORT_API_VERSION}")
        slots = ctypes.cast(table, _OUT)
        self._fns = {
            name: ctypes.CFUNCTYPE(returns, *args)(slots[index])
            for name, (index, returns, args) in _FUNCTIONS.items()
        }
        # Catch a miscounted index before anything else: cheap calls whose results are known.
        self.memory = self.out("CreateCpuMemoryInfo", what, _ARENA_ALLOCATOR, _MEM_TYPE_DEFAULT)
        options = self.out("CreateSessionOptions", what)
        status = self.SetSessionGraphOptimizationLevel(options, -1)  # must fail
        code, message = (
            (self.GetErrorCode(status), self.GetErrorMessage(status)) if status else (0, b"")
        )
        self.ReleaseStatus(status)
        self.ReleaseSessionOptions(options)
        if not self.memory or code != _INVALID_ARGUMENT or not message:
            raise LibraryError(f"{what}: a call meant to fail gave error code {code}")
        self.env = self.out("CreateEnv", "cannot start onnxruntime", _LOG_ERROR, b"outpost")
        self.allocator = self.out("GetAllocatorWithDefaultOptions", "cannot start onnxruntime")

    def __getattr__(self, name: str) -> Callable[..., Any]:
        try:
            return self.__dict__["_fns"][name]
        except KeyError:
            raise AttributeError(name) from None

    def check(self, status: int | None, what: str) -> None:
        """Raise the C API's error (one line) when a call returned a status."""
        if status:
            message = (self.GetErrorMessage(status) or b"").decode(errors="replace")
            self.ReleaseStatus(status)
            raise ModelError(one_line(f"{what}: {message}"))

    def out(self, name: str, what: str, *args: Any) -> Any:
        """Call a function whose last argument is where it writes a pointer; return that."""
        result = ctypes.c_void_p()
        self.check(self._fns[name](*args, ctypes.byref(result)), what)
        return result.value


_LOCK = threading.Lock()
_LOADED: list[_Api] = []


def load() -> _Api:
    """The library, loaded once per process from the onnxruntime package's capi/ folder, found
    without importing the package (the handle onnxruntime-genai got, if it came first)."""
    with _LOCK:
        if not _LOADED:
            try:
                spec = importlib.util.find_spec("onnxruntime")
            except (ImportError, ValueError):
                spec = None
            folders = [Path(f) / "capi" for f in (spec and spec.submodule_search_locations) or []]
            found = [p for f in folders for p in sorted(f.glob("libonnxruntime.so*"))]
            found += [p for f in folders for p in sorted(f.glob("libonnxruntime*.dylib"))]
            if not found:
                raise LibraryError(
                    "onnxruntime is not installed (no onnxruntime package with a "
                    "capi/libonnxruntime library): pip install onnxruntime"
                )
            _LOADED.append(_Api(found[0]))
        return _LOADED[0]


def _dims(api: _Api, info: int, what: str) -> list[int]:
    """An OrtTensorTypeAndShapeInfo's dimensions; -1 for a symbolic or unknown one."""
    count = ctypes.c_size_t()
    api.check(api.GetDimensionsCount(info, ctypes.byref(count)), what)
    dims = (ctypes.c_int64 * count.value)()
    api.check(api.GetDimensions(info, dims, count.value), what)
    return list(dims)


def _to_numpy(api: _Api, value: int | None, what: str) -> np.ndarray:
    """A copy of an output tensor (the OrtValue is released by the caller)."""
    info = api.out("GetTensorTypeAndShape", what, value)
    kind = ctypes.c_int()
    try:
        api.check(api.GetTensorElementType(info, ctypes.byref(kind)), what)
        shape = _dims(api, info, what)
    finally:
        api.ReleaseTensorTypeAndShapeInfo(info)
    if kind.value not in _TO_NUMPY:
        raise ModelError(f"{what}: an output has element type {kind.value}, not supported here")
    array = np.empty(shape, dtype=_TO_NUMPY[kind.value])
    if array.nbytes:
        data = api.out("GetTensorMutableData", what, value)
        ctypes.memmove(array.ctypes.data, data, array.nbytes)
    return array


class Session:
    """One ONNX model on the CPU. `threads`/`inter_threads`: onnxruntime's intra- and inter-op
    threads (0: its default); `prepack` False: no pre-packed weight copies; `log_severity`: the
    session's log level (default: the environment's, errors only); `arena` False: each run's
    buffers are freed after it instead of kept in onnxruntime's arena, which grows with every
    new input shape (a served embedder and ranker: 60 MiB over 24 questions, docs/benchmarks.md)."""

    def __init__(
        self,
        path: Path,
        threads: int = 0,
        inter_threads: int = 0,
        prepack: bool = True,
        log_severity: int | None = None,
        arena: bool = True,
    ):
        self._session: int | None = None
        self.path = Path(path)
        api = self._api = load()
        what = f"cannot open the ONNX model {self.path}"
        options = api.out("CreateSessionOptions", what)
        try:
            if threads:
                api.check(api.SetIntraOpNumThreads(options, threads), what)
            if inter_threads:
                api.check(api.SetInterOpNumThreads(options, inter_threads), what)
            if log_severity is not None:
                api.check(api.SetSessionLogSeverityLevel(options, log_severity), what)
            if not arena:
                api.check(api.DisableCpuMemArena(options), what)
            if not prepack:
                entry = (b"session.disable_prepacking", b"1")
                api.check(api.AddSessionConfigEntry(options, *entry), what)
            self._session = api.out("CreateSession", what, api.env, os.fsencode(self.path), options)
        finally:
            api.ReleaseSessionOptions(options)
        self.input_names = self._names("SessionGetInputCount", "SessionGetInputName")
        self.output_names = self._names("SessionGetOutputCount", "SessionGetOutputName")
        self._outputs = (ctypes.c_char_p * len(self.output_names))(
            *[name.encode() for name in self.output_names]
        )

    def _names(self, count_fn: str, name_fn: str) -> list[str]:
        api, what = self._api, f"cannot read the ONNX model {self.path}"
        count = ctypes.c_size_t()
        api.check(getattr(api, count_fn)(self._session, ctypes.byref(count)), what)
        names = []
        for i in range(count.value):
            raw = api.out(name_fn, what, self._session, i, api.allocator)
            names.append(ctypes.string_at(raw).decode())
            api.check(api.AllocatorFree(api.allocator, raw), what)
        return names

    def output_dims(self, index: int) -> list[int]:
        """Output `index`'s dimensions as the model declares them, -1 where symbolic."""
        api, what = self._api, f"cannot read output {index} of the ONNX model {self.path}"
        type_info = api.out("SessionGetOutputTypeInfo", what, self._session, index)
        try:
            tensor_info = api.out("CastTypeInfoToTensorInfo", what, type_info)
            if not tensor_info:
                raise ModelError(f"{what}: it is not a tensor")
            return _dims(api, tensor_info, what)  # owned by type_info, not released apart
        finally:
            api.ReleaseTypeInfo(type_info)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Every output, in `output_names` order, as a numpy array of its own."""
        api, what = self._api, f"cannot run the ONNX model {self.path}"
        if not self._session:
            raise ModelError(f"{what}: the session is closed")
        for name in feeds:
            if name not in self.input_names:
                inputs = ", ".join(self.input_names)
                raise ModelError(f"{what}: it has no input {name!r} (its inputs: {inputs})")
        keys, arrays = list(feeds), [np.asarray(v, order="C") for v in feeds.values()]  # kept alive
        names = (ctypes.c_char_p * len(keys))(*[name.encode() for name in keys])
        values = (ctypes.c_void_p * len(arrays))()
        results = (ctypes.c_void_p * len(self._outputs))()
        try:
            for i, array in enumerate(arrays):
                if array.dtype not in _TO_ONNX:
                    raise ModelError(f"{what}: input {keys[i]!r} is {array.dtype}, not supported")
                shape = (ctypes.c_int64 * array.ndim)(*array.shape)
                values[i] = api.out(
                    "CreateTensorWithDataAsOrtValue", what, api.memory, array.ctypes.data,
                    array.nbytes, shape, array.ndim, _TO_ONNX[array.dtype],
                )  # fmt: skip
            outputs = (self._outputs, len(results), results)
            api.check(api.Run(self._session, None, names, values, len(arrays), *outputs), what)
            return [_to_numpy(api, value, what) for value in results]
        finally:
            for value in (*values, *results):
                if value:
                    api.ReleaseValue(value)

    def close(self) -> None:
        """Release the session (not while another thread runs it)."""
        session, self._session = self._session, None
        if session:
            self._api.ReleaseSession(session)

    def __del__(self) -> None:
        if getattr(self, "_session", None):
            self.close()
