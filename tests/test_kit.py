"""`outpost kit` for real: the x86-64 kit installs with the network cut off and answers; the
aarch64 kit's wheels run under qemu in an arm64 Debian root and answer (or the test says why
it cannot run here). Both download wheels from the package index once per run."""

import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile

import pytest

from conftest import outpost

pytestmark = pytest.mark.slow
QUESTION = "What is the maximum system pressure?"


def make_kit(tmp_path, platform_tag: str, bundle, key) -> tuple:
    kit = tmp_path / f"kit-{platform_tag}"
    done = outpost(
        "kit",
        "--out",
        str(kit),
        "--platform",
        platform_tag,
        "--bundle",
        str(bundle),
        "--trust",
        f"{key}.pub",
        "--sign",
        f"{key}.key",
        "--question",
        QUESTION,
        "--json",
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return kit, json.loads(done.stdout)


def network_cut() -> list[str]:
    """`unshare -n` (a network namespace with no interfaces) where this user may make one."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


def test_x86_64_kit_installs_offline_and_answers(tiny_bundle, signing_key, tmp_path):
    if platform.machine() != "x86_64" or sys.version_info[:2] != (3, 11):
        pytest.skip("the x86-64 kit test installs for this machine: x86-64, Python 3.11")
    kit, manifest = make_kit(tmp_path, "manylinux_2_28_x86_64", tiny_bundle, signing_key)
    names = " ".join(manifest["wheels"])
    assert "onnxruntime_genai" in names and "usearch" in names and "fastapi" in names
    assert "huggingface-hub" in manifest["left_out"] and "huggingface_hub" not in names
    # Signatures are checked with PyNaCl; cryptography signs on the build side only.
    assert "pynacl" in names and "cryptography" not in names and "pycparser" not in names
    assert manifest["bundle"] == "bundle.tar" and (kit / "keys" / "release.pub").is_file()
    assert manifest["slimmed_bytes"] > 10_000_000  # debug symbols and tools left out

    prefix = tmp_path / "device"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p)
    env["PIP_INDEX_URL"] = "http://127.0.0.1:9/nothing"  # any index use would fail
    done = subprocess.run(
        [*network_cut(), "sh", str(kit / "install.sh"), str(prefix)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "signature valid" in done.stdout and "check: one question" in done.stderr
    assert "files match kit.json; signed by key" in done.stderr  # checked before installing
    assert (prefix / "keys" / "release.pub").is_file()  # later kits must be signed by it
    assert "Sources:" in done.stdout or "do not cover" in done.stdout
    assert (prefix / "bundles" / "current").is_symlink()

    site = next(prefix.glob("lib/python3.*/site-packages"))
    present = {p.name.split("-")[0].lower() for p in site.iterdir()}
    assert "huggingface_hub" not in present and "pip" not in present and "torch" not in present
    assert "nacl" in present and "cryptography" not in present and "pycparser" not in present
    # one onnxruntime: its C library, without the Python extension (a second copy of it)
    assert list(site.glob("onnxruntime/capi/libonnxruntime.so*"))
    assert not list(site.glob("onnxruntime/capi/onnxruntime_pybind11_state*"))
    assert (
        "ray" not in present and "pyarrow" not in present
    )  # export --engine ray's, not a device's
    check = subprocess.run(
        [
            str(prefix / "bin" / "python"),
            "-c",
            "import outpost.cli, outpost.runtime.serve.app, fastapi, uvicorn, usearch.index, "
            "onnxruntime_genai, nacl.signing",
        ],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    again = subprocess.run(
        [str(prefix / "bin" / "outpost"), "ask", str(prefix / "bundles"), QUESTION, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0 and "answer" in json.loads(again.stdout)


def test_kit_refuses_what_a_device_cannot_run(tmp_path):
    for args, needle in [
        (("--platform", "manylinux_2_17_x86_64"), "glibc 2.28"),
        (("--platform", "win_amd64"), "--platform"),
        (("--python", "3.10"), "--python"),
        (("--bundle", str(tmp_path)), "no bundle.json"),
    ]:
        done = outpost("kit", "--out", str(tmp_path / "k"), *args)
        assert (
            done.returncode in (1, 2) and needle in done.stderr and "Traceback" not in done.stderr
        )
    assert not (tmp_path / "k").exists()


def arm64_root(tmp_path):
    qemu = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
    debstrap = shutil.which("mmdebstrap")
    if not qemu or not debstrap:
        pytest.skip(
            "needs Debian's qemu-user-static and mmdebstrap to run arm64 Python (make test installs them)"
        )
    root = tmp_path / "arm64root"
    packages = (
        "libpython3.11-minimal,python3.11-minimal,libpython3.11-stdlib,zlib1g,libffi8,libssl3,"
        "libexpat1,libbz2-1.0,liblzma5,libsqlite3-0,libstdc++6,libgcc-s1"
    )
    done = subprocess.run(
        [
            debstrap,
            "--variant=extract",
            "--architectures=arm64",
            f"--include={packages}",
            "bookworm",
            str(root),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        pytest.skip(
            f"no arm64 Debian root could be made here: {done.stderr.strip().splitlines()[-1:]}"
        )
    # qemu-user shows programs this machine's /proc/cpuinfo (x86), and onnxruntime's CPU probe
    # (cpuinfo) crashes on it; qemu looks for files under the root first, so give it an arm64 one
    # (two Neoverse-N1 cores, as an arm64 device reports them).
    core = (
        "processor\t: {n}\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 "
        "atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\n"
        "CPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n"
    )
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc" / "cpuinfo").write_text(core.format(n=0) + core.format(n=1))
    return qemu, root


def test_aarch64_kit_answers_under_emulation(tiny_bundle, signing_key, tmp_path):
    qemu, root = arm64_root(tmp_path)
    kit, manifest = make_kit(tmp_path, "manylinux_2_28_aarch64", tiny_bundle, signing_key)
    assert all("x86_64" not in name for name in manifest["wheels"])
    assert any("aarch64" in name for name in manifest["wheels"])
    # No binfmt here to run arm64 programs by themselves: pip (on this machine) unpacks the
    # arm64 wheels into a folder, and qemu runs the arm64 Python from the root on them.
    site = tmp_path / "site"
    names = [f"manylinux_2_{n}_aarch64" for n in range(28, 16, -1)] + ["manylinux2014_aarch64"]
    tags = [a for name in names for a in ("--platform", name)]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-index",
            "--no-deps",
            "--no-compile",
            "--target",
            str(site),
            *tags,
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--only-binary=:all:",
            "-q",
            *[str(w) for w in sorted((kit / "wheels").glob("*.whl"))],
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with tarfile.open(kit / "bundle.tar") as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    bundle = next((tmp_path / "unpacked").iterdir())
    python = root / "usr" / "bin" / "python3.11"
    run = (
        "import platform, sys; print(platform.machine(), file=sys.stderr); "
        "sys.argv = ['outpost', 'ask', sys.argv[1], sys.argv[2], '--json', '--reader', 'chunks', "
        "'--trust', sys.argv[3]]; "
        "from outpost.cli import main; main()"
    )
    done = subprocess.run(
        [
            qemu,
            "-L",
            str(root),
            str(python),
            "-c",
            run,
            str(bundle),
            QUESTION,
            str(kit / "keys" / "release.pub"),
        ],
        capture_output=True,
        text=True,
        timeout=1500,
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "OUTPOST_THREADS": "2",
            "PYTHONPATH": str(site),
        },
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.splitlines()[0] == "aarch64"
    assert "answer" in json.loads(done.stdout)
