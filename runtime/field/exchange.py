"""The field log as one file that travels: `outpost feedback export` at the device, `merge` of
many devices' files, and the reader every workstation command uses.

The file is JSON lines: a header (`format`, `v`, `created`, `device`, `entries`, `dropped`,
`sha256` of every byte after the header line), then one line per answer with its verdict joined
in (`helpful`, `note`, `rated`; `helpful` null when nobody answered). A file whose checksum does
not match is refused; merging keeps each answer id once, with its latest verdict.
docs/feedback.md has the keys.
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterable
from pathlib import Path

from outpost.runtime.errors import InputError
from outpost.runtime.field.log import FieldLog, now
from outpost.runtime.files import write_atomic

FORMAT = "outpost-feedback"
MAX_FILE = 512 * 1024 * 1024  # an export read back: far above any log's cap


def joined(entries: Iterable[dict]) -> list[dict]:
    """One row per answer, oldest first, with its latest verdict (verdicts for answers the log
    no longer holds are left out: rotation dropped the answer)."""
    answers: dict[str, dict] = {}
    verdicts: dict[str, dict] = {}
    for e in entries:
        if e.get("kind") == "answer" and isinstance(e.get("id"), str):
            answers[e["id"]] = e
        elif e.get("kind") == "verdict" and isinstance(e.get("id"), str):
            if e["id"] not in verdicts or str(e.get("time")) >= str(verdicts[e["id"]]["time"]):
                verdicts[e["id"]] = e
    rows = []
    for key, a in answers.items():
        v = verdicts.get(key)
        row = {k: a[k] for k in a if k != "kind"}
        row.update(
            helpful=None if v is None else bool(v.get("helpful")),
            note=None if v is None else v.get("note"),
            rated=None if v is None else v.get("time"),
        )
        rows.append(row)
    return sorted(rows, key=lambda r: (str(r.get("time")), r["id"]))


def write(rows: list[dict], out: str | Path, dropped: int = 0, device: str | None = None) -> dict:
    """Write the export file (atomically); returns its header."""
    body = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in rows)
    header = {
        "format": FORMAT,
        "v": 1,
        "created": now(),
        "device": device if device is not None else socket.gethostname(),
        "entries": len(rows),
        "dropped": dropped,
        "sha256": hashlib.sha256(body.encode()).hexdigest(),
    }
    write_atomic(Path(out), json.dumps(header, ensure_ascii=False) + "\n" + body)
    return header


def export(log: FieldLog, out: str | Path) -> dict:
    """The device's log as one file; returns its header."""
    return write(joined(log.entries()), out, log.stats().dropped)


def read(path: str | Path) -> tuple[dict, list[dict]]:
    """(header, rows) of an export file; InputError naming the file when it is not one, or its
    checksum does not match (a copy cut short, or edited)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE:
            raise InputError(f"{path}: over {MAX_FILE >> 20} MiB; this is not a feedback export")
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {path} ({e.strerror}); give a feedback export") from None
    head, _, body = data.partition(b"\n")
    try:
        header = json.loads(head)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InputError(f"{path}: not a feedback export (make one with `outpost feedback export`)")
    if header.get("v") != 1:
        raise InputError(f"{path}: feedback format v{header.get('v')}; this Outpost reads v1")
    if hashlib.sha256(body).hexdigest() != header.get("sha256"):
        raise InputError(
            f"{path}: its checksum does not match (cut short or edited); export it again"
        )
    rows = []
    for n, line in enumerate(body.decode("utf-8").splitlines(), 2):
        try:
            row = json.loads(line)
        except ValueError:
            raise InputError(f"{path}:{n}: not a JSON line") from None
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            raise InputError(f"{path}:{n}: an entry needs an `id`")
        rows.append(row)
    return header, rows


def merge(paths: Iterable[str | Path]) -> tuple[list[dict], dict]:
    """The rows of every file, each answer id once (its latest verdict), and counts."""
    by_id: dict[str, dict] = {}
    files = dropped = seen = 0
    for p in paths:
        header, rows = read(p)
        files += 1
        dropped += int(header.get("dropped") or 0)
        for row in rows:
            seen += 1
            old = by_id.get(row["id"])
            if old is None or str(row.get("rated") or "") > str(old.get("rated") or ""):
                by_id[row["id"]] = row
    rows = sorted(by_id.values(), key=lambda r: (str(r.get("time")), r["id"]))
    return rows, {
        "files": files,
        "entries": seen,
        "kept": len(rows),
        "duplicates": seen - len(rows),
        "dropped": dropped,
    }
