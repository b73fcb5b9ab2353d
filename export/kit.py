"""`outpost kit`: what an offline device needs to install Outpost, for its platform and Python.

    outpost kit --out kit/ --platform manylinux_2_28_aarch64 --python 3.11 \\
                --bundle bundle/ --trust release.pub

On a machine with a package index: Outpost's own wheel is built, pip resolves and downloads the
runtime's wheels for the target (binary wheels only; a device cannot compile), and what a device
never imports is left out (the model-hub client that tokenizers pulls in, the symbolic-math and
logging helpers onnxruntime lists). The kit holds `wheels/`, `install.sh` (installs them with
no index into a virtual environment, then the bundle, then runs `outpost verify` and one
question), `kit.json` (what is in it and for what) and, when given, the bundle as an archive and
the trusted public key. The folder is written beside its final name and renamed when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import asdict
from email.parser import Parser
from pathlib import Path

from outpost.export.config import KitConfig
from outpost.runtime.errors import InputError
from outpost.runtime.files import new_folder
from outpost.runtime.log import log

ROOT = Path(__file__).resolve().parents[1]
# Dependencies a device never imports: dropped with everything only they need.
NEVER_IMPORTED = {
    ("tokenizers", "huggingface-hub"),  # downloads from the hub; bundles carry their tokenizers
    ("onnxruntime", "sympy"),  # symbolic shape inference, a model-building tool
    ("onnxruntime", "coloredlogs"),  # logging colours for onnxruntime's tools
}
# Folders inside wheels that a device never imports: model-building tools and test suites.
NEVER_LOADED = (
    "onnxruntime/transformers/",
    "onnxruntime/tools/",
    "onnxruntime/quantization/",
    "onnxruntime/datasets/",
    "numpy/f2py/",
    "numpy/_pyinstaller/",
)


def build_kit(config: KitConfig) -> dict:
    config.check()
    out = Path(config.out)
    if out.exists() and not config.force:
        raise InputError(f"{out} already exists; choose another --out or pass --force")
    with new_folder(out) as tmp:  # renamed into place only when everything is written
        (tmp / "wheels").mkdir()
        ours = _own_wheel(tmp / "wheels")
        _download(config, ours, tmp / "wheels")
        kept, dropped = _prune(config, tmp / "wheels", ours)
        saved = 0 if config.full else sum(slim(w) for w in sorted((tmp / "wheels").glob("*.whl")))
        if config.bundle:
            from outpost.export.pack import pack

            log(f"packing {config.bundle}")
            trusted = [Path(config.trust)] if config.trust else []
            pack(Path(config.bundle), tmp / "bundle.tar", trusted)
        if config.trust:
            (tmp / "keys").mkdir()
            shutil.copy2(config.trust, tmp / "keys" / Path(config.trust).name)
        (tmp / "tools").mkdir()
        _pip("download", "--only-binary=:all:", "--no-deps", "-d", str(tmp / "tools"), "pip")
        (tmp / "install.sh").write_text(_script(config))
        (tmp / "install.sh").chmod(0o755)
        manifest = {
            "platform": config.platform,
            "python": config.python,
            "arch": config.arch,
            "glibc_min": f"2.{config.glibc}",
            "wheels": {w.name: w.stat().st_size for w in sorted((tmp / "wheels").glob("*.whl"))},
            "left_out": dropped,
            "slimmed_bytes": saved,
            "bundle": "bundle.tar" if config.bundle else None,
            "trusted_key": f"keys/{Path(config.trust).name}" if config.trust else None,
            "config": {k: v for k, v in asdict(config).items() if k not in ("out", "force")},
        }
        manifest["wheels_bytes"] = sum(manifest["wheels"].values())
        (tmp / "kit.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log(
        f"kit: {len(kept)} wheels, {manifest['wheels_bytes'] / 1e6:.1f} MB; left out {', '.join(dropped) or 'nothing'}"
    )
    return manifest


def _own_wheel(dest: Path) -> Path:
    if not (ROOT / "pyproject.toml").is_file():
        raise InputError(
            "outpost kit builds Outpost's wheel from its source tree; run it from a checkout"
        )
    log("building Outpost's wheel")
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(dest), str(ROOT))
    wheels = sorted(dest.glob("outpost_llm-*.whl"))
    if not wheels:
        raise InputError("pip built no outpost_llm wheel; see the pip output above")
    return wheels[-1]


def _download(config: KitConfig, ours: Path, dest: Path) -> None:
    log(f"downloading the runtime's wheels for {config.platform}, Python {config.python}")
    platform_args = [a for tag in config.platforms for a in ("--platform", tag)]
    _pip(
        "download",
        "--only-binary=:all:",
        "--python-version",
        config.python,
        "--implementation",
        "cp",
        *platform_args,
        "-d",
        str(dest),
        str(ours),
    )


def _pip(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "-q"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        last = [line for line in done.stderr.splitlines() if line.strip() and "WARNING" not in line]
        detail = last[-1].strip() if last else f"exit {done.returncode}"
        raise InputError(f"pip {args[0]} failed: {detail}; check the package index is reachable")


def _name(wheel: Path) -> str:
    return wheel.name.split("-")[0].lower().replace("_", "-")


def requirements(wheel: Path, env: dict) -> list[str]:
    """The names a wheel requires in `env` (markers evaluated, extras not asked for)."""
    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        headers = Parser().parsestr(z.read(meta).decode("utf-8"))
    names = []
    for line in headers.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({**env, "extra": ""}):
            names.append(req.name.lower().replace("_", "-"))
    return names


def _prune(config: KitConfig, dest: Path, ours: Path) -> tuple[list[str], list[str]]:
    """Keep what the runtime reaches from Outpost's wheel, minus the edges a device never uses."""
    env = {
        "python_version": config.python,
        "python_full_version": config.python + ".0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": config.arch,
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    wheels = {_name(w): w for w in dest.glob("*.whl")}
    keep, todo = set(), [_name(ours)]
    while todo:
        name = todo.pop()
        if name in keep or name not in wheels:
            continue
        keep.add(name)
        for dep in requirements(wheels[name], env):
            if config.full or (name, dep) not in NEVER_IMPORTED:
                todo.append(dep)
    dropped = sorted(set(wheels) - keep)
    for name in dropped:
        wheels[name].unlink()
    return sorted(keep), dropped


def slim(wheel: Path) -> int:
    """Rewrite a wheel without debug symbols in its libraries and without NEVER_LOADED folders
    (RECORD updated to match). Returns the bytes saved once installed; 0 when unchanged."""
    import base64
    import hashlib
    import tempfile

    strip = shutil.which("llvm-strip") or shutil.which("strip")
    with zipfile.ZipFile(wheel) as z:
        entries = [(info, z.read(info)) for info in z.infolist()]
    record_name = next(i.filename for i, _ in entries if i.filename.endswith(".dist-info/RECORD"))
    out, saved = [], 0
    for info, data in entries:
        name = info.filename
        if any(name.startswith(prefix) or "/tests/" in name for prefix in NEVER_LOADED):
            saved += len(data)
            continue
        if strip and (name.endswith(".so") or ".so." in name) and len(data) > 1_000_000:
            with tempfile.TemporaryDirectory() as tmp:
                lib = Path(tmp) / "lib.so"
                lib.write_bytes(data)
                done = subprocess.run([strip, "--strip-debug", str(lib)], capture_output=True)
                # Only libraries built with debug info shrink a lot; leave the rest as published
                # (stripping a library patched by auditwheel can break it).
                if done.returncode == 0 and lib.stat().st_size < 0.7 * len(data):
                    saved += len(data) - lib.stat().st_size
                    data = lib.read_bytes()
        out.append((info, data))
    if not saved:
        return 0
    record = []
    for info, data in out:
        if info.filename == record_name:
            continue
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{info.filename},sha256={digest},{len(data)}")
    record.append(f"{record_name},,")
    tmp = wheel.with_name(wheel.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for info, data in out:
            if info.filename == record_name:
                data = ("\n".join(record) + "\n").encode()
            z.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    os.replace(tmp, wheel)
    return saved


def _script(config: KitConfig) -> str:
    trust = f'--trust "$KIT/keys/{Path(config.trust).name}"' if config.trust else ""
    glibc = config.glibc
    question = config.question.replace("'", "'\\''")
    bundle_steps = (
        f"""
"$PREFIX/bin/outpost" install "$KIT/bundle.tar" --bundles "$PREFIX/bundles" {trust}
"$PREFIX/bin/outpost" verify "$PREFIX/bundles/current" {trust}
echo "check: one question" >&2
"$PREFIX/bin/outpost" ask "$PREFIX/bundles" '{question}' --threads "${{OUTPOST_THREADS:-0}}" {trust}
"""
        if config.bundle
        else ""
    )
    return f"""#!/bin/sh
# Offline install of Outpost, made by `outpost kit` for {config.platform}, Python {config.python}.
# Uses no network: every wheel is in wheels/. Usage: ./install.sh [PREFIX]   (default ~/outpost)
set -eu
KIT=$(cd "$(dirname "$0")" && pwd)
PREFIX=${{1:-${{OUTPOST_PREFIX:-$HOME/outpost}}}}
PYTHON=${{PYTHON:-python3}}
fail() {{ echo "Error: $*" >&2; exit 1; }}
command -v "$PYTHON" >/dev/null 2>&1 || fail "$PYTHON not found; install Python {config.python} (Debian: apt install python3 python3-venv)"
"$PYTHON" - <<'CHECK' || exit 1
import platform, sys
problems = []
have = "%d.%d" % sys.version_info[:2]
if have != "{config.python}":
    problems.append("Python " + have + ", this kit is for Python {config.python}")
if platform.machine() != "{config.arch}":
    problems.append("a " + platform.machine() + " machine, this kit is for {config.arch}")
lib, version = platform.libc_ver()
if lib != "glibc" or tuple(int(x) for x in version.split(".")[:2]) < (2, {glibc}):
    problems.append((lib or "no glibc") + " " + version + ", the wheels need glibc >= 2.{glibc}")
if problems:
    sys.exit("Error: " + "; ".join(problems) + "; make a kit for this device: outpost kit --platform manylinux_2_N_ARCH --python X.Y")
CHECK
[ -e "$PREFIX/bin/outpost" ] && echo "note: $PREFIX already holds Outpost; installing over it" >&2
"$PYTHON" -m venv --without-pip "$PREFIX" || fail "cannot make a virtual environment in $PREFIX (Debian: apt install python3-venv)"
# pip runs from its own wheel and stays out of the device install.
"$PREFIX/bin/python" "$(ls "$KIT"/tools/pip-*.whl)/pip" install --no-index --no-deps --no-compile \\
  --disable-pip-version-check -q "$KIT"/wheels/*.whl
"$PREFIX/bin/python" -m compileall -q "$PREFIX/lib" >/dev/null || true
{bundle_steps}echo "installed: $PREFIX/bin/outpost" >&2
"""
