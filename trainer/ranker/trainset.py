"""The line ranker's training documents: the Debian packages issue 29 names, downloaded
(`apt-get download`, nothing installed), extracted and indexed.

    .venv/bin/python -m outpost.trainer.ranker.trainset --root .outpost-cache/train

Writes under ROOT: `debs/` and `files/` (the extracted packages), `man/` (every English manual
page of them rendered to Markdown: `man` with no hyphenation or justification, section names as
headings, so Outpost's reader sees entries and their descriptions as blocks) and
`text/index.jsonl` (one row per training document: its package, its path under ROOT, its size).
The rest of Debian's documentation is reserved for evaluation, and the dev manuals
(../shared/evals) are for measuring: none of them is here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from outpost.trainer.ranker.faq import PACKAGES

MANUALS = (*PACKAGES, "debian-handbook", "debian-reference-en")  # the FAQ packages and two books
MAN_PAGES = (
    "manpages",
    "manpages-dev",
    "coreutils",
    "util-linux",
    "iproute2",
    "procps",
    "systemd",
    "openssh-client",
    "openssh-server",
    "rsync",
    "tar",
    "curl",
    "wget",
    "sudo",
    "cron",
    "e2fsprogs",
    "lvm2",
    "mdadm",
    "nftables",
    "iptables",
    "chrony",
    "network-manager",
)
PACKAGE_NAMES = {"python3.11-doc": "python3-doc", "debian-reference-en": "debian-reference"}


def download(root: Path) -> None:
    debs, files = root / "debs", root / "files"
    debs.mkdir(parents=True, exist_ok=True)
    files.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", *MANUALS, *MAN_PAGES], cwd=debs, check=True)
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(files)], check=True)


def man_packages(root: Path) -> dict[str, str]:
    """Manual page file name (without .gz) -> the package that ships it."""
    owner = {}
    for deb in sorted((root / "debs").glob("*.deb")):
        package = subprocess.run(
            ["dpkg-deb", "-f", str(deb), "Package"], capture_output=True, text=True, check=True
        ).stdout.strip()
        listing = subprocess.run(
            ["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True
        ).stdout
        for line in listing.splitlines():
            path = line.split()[-1] if line.split() else ""
            if re.match(r"\./usr/share/man/man[1-8]/", path):
                owner[Path(path).name.removesuffix(".gz")] = package
    return owner


def render_man(page: Path) -> str | None:
    """One manual page as Markdown: its sections as headings, entries as blocks."""
    env = {**os.environ, "MANWIDTH": "3000"}
    shown = subprocess.run(
        ["man", "--nh", "--nj", "-E", "UTF-8", "-l", "-P", "cat", str(page)],
        capture_output=True,
        env=env,
    ).stdout
    text = subprocess.run(["col", "-bx"], input=shown, capture_output=True).stdout
    lines = text.decode("utf-8", "replace").splitlines()
    if len(lines) < 5:
        return None
    md = [f"# {page.name.removesuffix('.gz')}", ""]
    for line in lines[1:-1]:
        s = line.strip()
        if line and not line[0].isspace() and s.upper() == s and re.search("[A-Z]", s):
            md += ["", f"## {s.title()}", ""]
        elif line.startswith("   ") and len(line) - len(line.lstrip()) <= 3 and s:
            md += ["", f"### {s}", ""]
        else:
            md.append(s)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(md))


def documents(root: Path) -> dict[str, list[Path]]:
    """The training documents per package, English only."""
    doc = root / "files/usr/share/doc"
    return {
        "debian-handbook": sorted((doc / "debian-handbook/html/en-US").glob("*.html")),
        "debian-reference": sorted((root / "files/usr/share/debian-reference").glob("*.en.html")),
        "debian-faq": [doc / "debian/FAQ/debian-faq.txt.gz"],
        "python3-doc": sorted(
            p for p in (doc / "python3.11/html").rglob("*.html") if "/_" not in str(p)
        ),
        "git-doc": sorted((doc / "git-doc").glob("*.html")),
        "sqlite3-doc": sorted((doc / "sqlite3").glob("*.html")),
        "apache2-doc": sorted((doc / "apache2-doc/manual/en").rglob("*.html")),
        "bash-doc": [doc / "bash/bashref.html"],
        "zsh-doc": sorted((doc / "zsh-common/html").glob("*.html")),
    }


def build(root: Path) -> dict:
    out = root / "man"
    out.mkdir(parents=True, exist_ok=True)
    owner = man_packages(root)
    rows: list[dict] = []
    for package, paths in documents(root).items():
        rows += [
            {"package": package, "file": p.relative_to(root).as_posix(), "chars": p.stat().st_size}
            for p in paths
            if p.is_file()
        ]
    for page in sorted((root / "files/usr/share/man").glob("man[1-8]/*")):
        name = page.name.removesuffix(".gz")
        if page.is_symlink() or name not in owner:
            continue
        md = render_man(page)
        if md is None:
            continue
        (out / f"{name}.md").write_text(md, encoding="utf-8")
        package = PACKAGE_NAMES.get(owner[name], owner[name])
        rows.append({"package": package, "file": f"man/{name}.md", "chars": len(md)})
    (root / "text").mkdir(exist_ok=True)
    with open(root / "text" / "index.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["package"]] = counts.get(r["package"], 0) + 1
    return {"documents": len(rows), "by_package": counts}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=".outpost-cache/train")
    ap.add_argument("--no-download", action="store_true", help="Use what --root already holds.")
    args = ap.parse_args(argv)
    root = Path(args.root)
    if not args.no_download:
        download(root)
    print(json.dumps(build(root)), file=sys.stderr)


if __name__ == "__main__":
    main()
