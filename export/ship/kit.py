"""`outpost kit`: what an offline device needs to install Outpost, for its platform and Python.

    outpost kit --out kit/ --platform manylinux_2_28_aarch64 --python 3.11 \\
                --bundle bundle/ --trust release.pub --sign release.key

On a machine with a package index: Outpost's own wheel is built, pip resolves and downloads the
runtime's wheels for the target (binary wheels only; a device cannot compile), and what a device
never imports is left out (the model-hub client that tokenizers pulls in, the symbolic-math and
logging helpers onnxruntime lists, the C parser cffi lists; a device checks signatures with
PyNaCl, so cryptography, the build side's signing library, is not in it). The kit holds
`wheels/`, `requirements.txt` (each wheel pinned with its sha256), `install.sh` (checks the kit,
installs the wheels with no index and `pip --require-hashes` into a virtual environment, then
the bundle, then runs `outpost verify` and one question), `tools/check_kit.py`
(export/ship/kit_check.py), `kit.json` (what is in it and for what, with the size and sha256 of
every file) and, when given, the bundle as an archive, the trusted public key and `kit.sig`
(`--sign`: an Ed25519 signature over kit.json). The folder is written beside its final name and
renamed when complete; `--force` replaces only a kit.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import zipfile
from dataclasses import asdict
from email.parser import Parser
from pathlib import Path
from typing import Any

from outpost.export.config import KitConfig
from outpost.runtime.errors import InputError, UsageError
from outpost.runtime.files import new_folder
from outpost.runtime.log import log

ROOT = Path(__file__).resolve().parents[2]
# Dependencies a device never imports: dropped with everything only they need.
NEVER_IMPORTED = {
    ("tokenizers", "huggingface-hub"),  # downloads from the hub; bundles carry their tokenizers
    ("onnxruntime", "sympy"),  # symbolic shape inference, a model-building tool
    ("onnxruntime", "coloredlogs"),  # logging colours for onnxruntime's tools
    # onnxruntime's model tools read and write ONNX protobufs, flatbuffers (ORT format) and
    # compare versions; the device never imports the onnxruntime package at all (its models run
    # through the C library: runtime/ask/onnx_session.py, and onnxruntime-genai)
    ("onnxruntime", "protobuf"),
    ("onnxruntime", "flatbuffers"),
    ("onnxruntime", "packaging"),
    # PyNaCl (the device's Ed25519 check) loads cffi's compiled `_cffi_backend` only; pycparser
    # parses C declarations when a cffi module is built, never when one is loaded
    ("cffi", "pycparser"),
}
# Folders inside wheels that a device never imports: model-building tools and test suites.
NEVER_LOADED = (
    # onnxruntime's Python extension, a second copy of the runtime (30 MB): the device runs its
    # models through capi/libonnxruntime.so (runtime/ask/onnx_session.py, onnxruntime-genai)
    "onnxruntime/capi/onnxruntime_pybind11_state",
    "onnxruntime/transformers/",
    "onnxruntime/tools/",
    "onnxruntime/quantization/",
    "onnxruntime/datasets/",
    "numpy/f2py/",
    "numpy/distutils/",  # numpy's build tooling (deprecated), never imported by numpy itself
    "numpy/_pyinstaller/",
    "outpost/models/",  # the build side's ranker: each bundle carries its own copy
)


KIT_MANIFEST, KIT_SIGNATURE = "kit.json", "kit.sig"
MAX_KIT_MANIFEST_BYTES = 4 * 2**20


def build_kit(config: KitConfig) -> dict:
    config.check()
    out = Path(config.out)
    if (out.exists() or out.is_symlink()) and not config.force:
        raise InputError(f"{out} already exists; choose another --out or pass --force")
    if out.exists() or out.is_symlink():
        check_replaceable(out)
    check_keys(config)
    with new_folder(out) as tmp:  # renamed into place only when everything is written
        (tmp / "wheels").mkdir()
        ours = _own_wheel(tmp / "wheels")
        _download(config, ours, tmp / "wheels")
        kept, dropped = _prune(config, tmp / "wheels", ours)
        saved = 0 if config.full else sum(slim(w) for w in sorted((tmp / "wheels").glob("*.whl")))
        if config.bundle:
            from outpost.export.ship.pack import pack

            log(f"packing {config.bundle}")
            trusted = [Path(config.trust)] if config.trust else []
            pack(Path(config.bundle), tmp / "bundle.tar", trusted)
        (tmp / "tools").mkdir()
        _pip("download", "--only-binary=:all:", "--no-deps", "-d", str(tmp / "tools"), "pip")
        manifest = write_kit(tmp, config, dropped, saved)
    log(
        f"kit: {len(kept)} wheels, {manifest['wheels_bytes'] / 1e6:.1f} MB; left out {', '.join(dropped) or 'nothing'}"
        + ("; kit.json signed" if config.sign else "")
    )
    return manifest


def _plain_file(flag: str, path: Path, fix: str) -> None:
    """A key path must be a plain file: a folder, FIFO, socket or device is named as such (and
    never opened, so a FIFO cannot hang the command)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{flag} {path} does not exist; {fix}") from None
    except OSError as e:
        raise InputError(f"{flag} {path} cannot be read ({e.strerror}); {fix}") from None
    if not stat.S_ISREG(st.st_mode):
        kinds = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket"}
        kind = next((k for test, k in kinds.items() if test(st.st_mode)), "a device")
        raise InputError(f"{flag} {path} is {kind}, not a key file; {fix}")


def check_keys(config: KitConfig) -> None:
    """--trust a readable Ed25519 public key; --sign the private half of that same key."""
    if not config.trust:
        return
    from outpost.runtime.bundle.verify import load_public_keys

    _plain_file(
        "--trust", Path(config.trust), "pass the release key's .pub (from `outpost keygen`)"
    )
    trusted = load_public_keys([Path(config.trust)])
    if config.sign:
        from outpost.export.ship.sign import signer_of

        _plain_file(
            "--sign", Path(config.sign), "pass the release key's .key (from `outpost keygen`)"
        )
        if not set(signer_of(Path(config.sign))) & set(trusted):
            raise UsageError(
                f"--sign {config.sign} is not the key of --trust {config.trust}: the device checks "
                "kit.sig with the trusted key; pass the .key and .pub of one key pair"
            )


def check_replaceable(out: Path) -> None:
    """--force replaces only a kit this tool made, holding nothing but the kit's own files (as
    `export --force` replaces only a bundle): never a user's folder or what they added to it."""
    from outpost.runtime.files import read_plain

    refuse = (
        f"{out} exists and is not a kit made by `outpost kit`; --force replaces only kits; "
        "choose another --out or remove it yourself"
    )
    if out.is_symlink() or not out.is_dir():
        raise InputError(refuse)
    try:
        manifest = json.loads(read_plain(out / KIT_MANIFEST, MAX_KIT_MANIFEST_BYTES, follow=False))
        wheels = manifest["wheels"]
        if not isinstance(wheels, dict) or "platform" not in manifest:
            raise TypeError
        listed = set(manifest.get("files") or ())
        if not listed:  # a kit from before kit.json listed every file
            listed = {"install.sh", *(f"wheels/{w}" for w in wheels)}
            listed |= {manifest.get("bundle"), manifest.get("trusted_key")} - {None}
            listed |= {p.relative_to(out).as_posix() for p in out.glob("tools/pip-*.whl")}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise InputError(refuse) from None
    listed |= {KIT_MANIFEST, KIT_SIGNATURE}
    foreign = []
    for parent, dirs, names in os.walk(out):
        for name in sorted(names) + [d for d in sorted(dirs) if (Path(parent) / d).is_symlink()]:
            rel = (Path(parent) / name).relative_to(out).as_posix()
            if rel not in listed or (Path(parent) / name).is_symlink():
                foreign.append(rel)
    if foreign:
        raise InputError(
            f"{out} holds files that are not part of its kit ({', '.join(sorted(foreign)[:3])}); "
            "--force would delete them; move them away or choose another --out"
        )


def _sha256(path: Path) -> str:
    from outpost.runtime.files import sha256_file

    return sha256_file(path)


def _requirements(wheels: list[Path]) -> str:
    """One pinned requirement with its sha256 per wheel: `pip --require-hashes` installs exactly
    these files or nothing."""
    lines = []
    for w in wheels:
        name, version = w.name.split("-")[:2]
        lines.append(f"{name}=={version} --hash=sha256:{_sha256(w)}")
    return "\n".join(lines) + "\n"


def write_kit(tmp: Path, config: KitConfig, dropped: list[str], saved: int) -> dict:
    """The kit's own files, once its wheels (and bundle.tar) are in `tmp`: the trusted key,
    tools/check_kit.py, requirements.txt (every wheel's sha256), install.sh, kit.json (the size
    and sha256 of every file) and, with --sign, kit.sig over kit.json. Checked as a device
    checks it before it is returned. Returns kit.json's content."""
    from outpost.export.ship import kit_check

    if config.trust:
        (tmp / "keys").mkdir(exist_ok=True)
        shutil.copyfile(config.trust, tmp / "keys" / Path(config.trust).name)
    shutil.copyfile(kit_check.__file__, tmp / "tools" / "check_kit.py")
    wheels = sorted((tmp / "wheels").glob("*.whl"))
    (tmp / "requirements.txt").write_text(_requirements(wheels))
    pips = sorted((tmp / "tools").glob("pip-*.whl"))
    if not pips:
        raise InputError("pip download gave no pip wheel for the kit; see the pip output above")
    (tmp / "install.sh").write_text(_script(config, pips[-1].name))
    (tmp / "install.sh").chmod(0o755)
    files = {
        p.relative_to(tmp).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(tmp.rglob("*"))
        if p.is_file() and p.name not in (KIT_MANIFEST, KIT_SIGNATURE)
    }
    manifest: dict[str, Any] = {
        "platform": config.platform,
        "python": config.python,
        "arch": config.arch,
        "glibc_min": f"2.{config.glibc}",
        "wheels": {w.name: files[f"wheels/{w.name}"] for w in wheels},
        "left_out": dropped,
        "slimmed_bytes": saved,
        "bundle": "bundle.tar" if config.bundle else None,
        "trusted_key": f"keys/{Path(config.trust).name}" if config.trust else None,
        "signed": bool(config.sign),
        "files": files,
        "config": {k: v for k, v in asdict(config).items() if k not in ("out", "force", "sign")},
    }
    manifest["wheels_bytes"] = sum(w["size"] for w in manifest["wheels"].values())
    raw = (json.dumps(manifest, indent=2) + "\n").encode()
    (tmp / KIT_MANIFEST).write_bytes(raw)
    if config.sign:
        from outpost.export.ship.sign import signature_record

        record = signature_record(raw, Path(config.sign))
        (tmp / KIT_SIGNATURE).write_text(json.dumps(record) + "\n")
    try:  # what install.sh will check, checked now: a kit that would fail is never written
        keys = None  # --sign needs --trust (KitConfig.check)
        if config.sign and config.trust:
            keys = kit_check.load_keys([Path(config.trust)], "--trust")
        kit_check.check_kit(tmp, keys, "--trust")
    except kit_check.KitError as e:
        raise InputError(f"the kit failed its own check: {e}") from None
    return manifest


def _own_wheel(dest: Path) -> Path:
    if not (ROOT / "pyproject.toml").is_file():
        raise InputError(
            "outpost kit builds Outpost's wheel from its source tree; run it from a checkout"
        )
    log("building Outpost's wheel")
    # From a copy of what the wheel is made of: setuptools builds in the tree's build/ folder
    # and packs whatever an older build left in build/lib (a moved file's stale copy, once).
    import tomllib

    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    source = dest / "source"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in {Path(d).parts[0] for d in setup["package-dir"].values()}:
        shutil.copytree(ROOT / folder, source / folder, ignore=skip)
    for f in [ROOT / "pyproject.toml", ROOT / "README.md", *ROOT.glob("LICEN[CS]E*")]:
        shutil.copy2(f, source / f.name)
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(dest), str(source))
    shutil.rmtree(source)
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
            with tempfile.TemporaryDirectory() as scratch:
                lib = Path(scratch) / "lib.so"
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


def _script(config: KitConfig, pip_wheel: str) -> str:
    """install.sh. Every name that comes from outside (the key's file name, the question, the pip
    wheel's name) is shell-quoted (shlex.quote) after a double-quoted "$KIT", never put inside a
    double-quoted string, so `$(...)`, backquotes or quotes in it are text, never run."""
    key = shlex.quote(f"keys/{Path(config.trust).name}") if config.trust else ""
    trust = f'--trust "$KIT"/{key}' if config.trust else ""
    glibc = config.glibc
    question = shlex.quote(config.question)
    bundle_steps = (
        f"""
"$PREFIX/bin/outpost" install "$KIT/bundle.tar" --bundles "$PREFIX/bundles" {trust}
"$PREFIX/bin/outpost" verify "$PREFIX/bundles/current" {trust}
echo "check: one question" >&2
"$PREFIX/bin/outpost" ask "$PREFIX/bundles" {question} --threads "${{OUTPOST_THREADS:-0}}" {trust}
"""
        if config.bundle
        else ""
    )
    keep_key = (
        f"""# A signed kit's key stays on the device: later kits must be signed by it.
mkdir -p "$PREFIX/keys" && cp "$KIT"/{key} "$PREFIX/keys/"
"""
        if config.sign
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
# Before anything is written: every file against kit.json (size, sha256), and kit.sig against
# the device's keys (OUTPOST_TRUSTED_KEYS, else those PREFIX/keys kept from a signed kit; a first
# install checks it with the kit's own key and prints its id).
"$PYTHON" "$KIT/tools/check_kit.py" "$KIT" --device-keys "$PREFIX/keys" || exit 1
[ -e "$PREFIX/bin/outpost" ] && echo "note: $PREFIX already holds Outpost; installing over it" >&2
"$PYTHON" -m venv --without-pip "$PREFIX" || fail "cannot make a virtual environment in $PREFIX (Debian: apt install python3-venv)"
# pip runs from its own wheel and stays out of the device install; it installs exactly the
# wheels requirements.txt pins, each checked against its sha256 (--require-hashes).
"$PREFIX/bin/python" "$KIT"/{shlex.quote("tools/" + pip_wheel)}/pip install --no-index --no-deps --no-compile \\
  --require-hashes --disable-pip-version-check -q --find-links "$KIT/wheels" \\
  -r "$KIT/requirements.txt"
# Bytecode only for what a device imports (about a third of it): Python writes it for each
# module imported here and by the check question below; the rest compiles if ever imported.
"$PREFIX/bin/python" -c "import outpost.cli, outpost.runtime.serve.app" 2>/dev/null || true
{bundle_steps}{keep_key}echo "installed: $PREFIX/bin/outpost" >&2
"""
