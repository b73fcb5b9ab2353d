"""The field log at the device (runtime/field/log.py) and the file it travels in
(runtime/field/exchange.py): crash-safe, bounded, private, and merged without duplicates."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import outpost
from outpost.runtime.errors import InputError
from outpost.runtime.field import exchange
from outpost.runtime.field.entry import new_id, verdict_entry
from outpost.runtime.field.log import FieldLog, FieldLogError, folder_for


def answer(n: int, **extra) -> dict:
    return {
        "v": 1,
        "kind": "answer",
        "id": f"chatcmpl-{n:024x}",
        "time": f"2026-12-0{1 + n % 2}T10:{n // 60 % 60:02d}:{n % 60:02d}Z",
        "question": f"question {n} " + "x" * 300,
        "mode": "quoted",
        **extra,
    }


def test_entries_come_back_in_order_and_only_this_user_reads_them(tmp_path):
    log = FieldLog(tmp_path / "feedback")
    for n in range(3):
        log.append(answer(n))
    log.append(verdict_entry(answer(1)["id"], False, "the pressure, not the flow", "api"))
    assert [e["kind"] for e in log.entries()] == ["answer"] * 3 + ["verdict"]
    assert (tmp_path / "feedback").stat().st_mode & 0o777 == 0o700
    (file,) = (tmp_path / "feedback").glob("field-*.jsonl")
    assert file.stat().st_mode & 0o777 == 0o600
    assert log.stats().entries == 4 and log.stats().torn == 0


WRITER = """
import sys
from outpost.runtime.field.log import FieldLog
log = FieldLog(sys.argv[1], max_bytes=1 << 30)
n = 0
while True:
    log.append({"v": 1, "kind": "answer", "id": "chatcmpl-%024x" % n, "n": n, "pad": "y" * 2000})
    n += 1
    if n == 20:
        print("writing", flush=True)
"""


def test_a_kill_during_writes_loses_nothing_written_before(tmp_path):
    folder = tmp_path / "feedback"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log = FieldLog(folder, max_bytes=1 << 30)
    seen = [e["n"] for e in log.entries()]
    assert len(seen) >= 20 and seen == list(range(len(seen)))  # every entry before the last
    assert log.stats().torn <= 1  # at most the one being written
    # A torn end is closed off: the next entry is whole.
    with open(sorted(folder.glob("field-*.jsonl"))[-1], "ab") as f:
        f.write(b'{"v": 1, "kind": "ans')
    log.append({"v": 1, "kind": "answer", "id": new_id(), "n": -1})
    assert list(log.entries())[-1]["n"] == -1 and log.stats().torn == 1


def test_past_the_cap_the_oldest_go_first_and_are_counted(tmp_path):
    log = FieldLog(tmp_path / "feedback", max_bytes=64 * 1024)
    for n in range(600):
        log.append(answer(n))
    stats = log.stats()
    assert stats.bytes <= 64 * 1024 + 16 * 1024  # the cap, give or take the file being written
    kept = [e for e in log.entries() if e["kind"] == "answer"]
    assert stats.dropped + len(kept) == 600  # nothing lost without being counted
    assert [int(e["id"][9:], 16) for e in kept] == list(range(stats.dropped, 600))  # the newest
    assert stats.files <= 5


def test_a_folder_of_another_user_or_inside_a_bundle_is_refused(tmp_path, monkeypatch):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "bundle.json").write_text("{}")
    with pytest.raises(FieldLogError, match="inside the bundle"):
        folder_for(bundle, bundle / "feedback")
    bundles = tmp_path / "bundles"
    (bundles / "releases" / "r1").mkdir(parents=True)
    (bundles / "current").symlink_to(bundles / "releases" / "r1")
    assert folder_for(bundles) == bundles / "feedback"
    log = FieldLog(tmp_path / "theirs")
    log.check()
    monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 1)  # as another user would be
    with pytest.raises(FieldLogError, match="belongs to uid"):
        log.append(answer(0))


def test_a_log_file_is_never_followed_through_a_link(tmp_path):
    folder = tmp_path / "feedback"
    folder.mkdir(mode=0o700)
    target = tmp_path / "elsewhere.txt"
    target.write_text("")
    (folder / "field-00000001.jsonl").symlink_to(target)
    with pytest.raises(FieldLogError, match="cannot write the field log"):
        FieldLog(folder).append(answer(0))
    assert target.read_text() == ""


def test_export_joins_verdicts_and_merge_keeps_each_answer_once(tmp_path):
    log = FieldLog(tmp_path / "feedback")
    for n in range(4):
        log.append(answer(n))
    first = answer(0)["id"]
    log.append({**verdict_entry(first, False, None, "kiosk"), "time": "2026-12-03T00:00:00Z"})
    log.append({**verdict_entry(first, True, "found it", "kiosk"), "time": "2026-12-03T00:00:05Z"})
    header = exchange.export(log, tmp_path / "a.jsonl")
    assert header["entries"] == 4
    _, rows = exchange.read(tmp_path / "a.jsonl")
    by_id = {r["id"]: r for r in rows}
    assert by_id[first]["helpful"] is True and by_id[first]["note"] == "found it"
    assert by_id[answer(3)["id"]]["helpful"] is None  # not rated
    # The same device exported twice and another device: duplicates go, the latest verdict stays.
    other = FieldLog(tmp_path / "other")
    other.append(answer(7))
    exchange.export(other, tmp_path / "b.jsonl")
    rows, counts = exchange.merge(
        [tmp_path / "a.jsonl", tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    )
    assert counts == {"files": 3, "entries": 9, "kept": 5, "duplicates": 4, "dropped": 0}
    # A copy cut short or edited is refused, naming the file.
    data = (tmp_path / "a.jsonl").read_text().replace("found it", "found IT")
    (tmp_path / "edited.jsonl").write_text(data)
    with pytest.raises(InputError, match="checksum does not match"):
        exchange.read(tmp_path / "edited.jsonl")


def test_feedback_commands_export_merge_rate_and_wipe(tmp_path):
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    log = FieldLog(bundles / "feedback")
    log.append(answer(1))
    out = tmp_path / "device.feedback.jsonl"
    done = outpost("feedback", "export", "--bundles", str(bundles), "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["entries"] == 1
    rated = outpost(
        "feedback", "rate", "--bundles", str(bundles), answer(1)["id"], "no", "--note", "torque"
    )
    assert rated.returncode == 0, rated.stderr
    wrong = outpost("feedback", "rate", "--bundles", str(bundles), new_id(), "yes")
    assert wrong.returncode == 1 and wrong.stderr.startswith("Error: no answer chatcmpl-")
    merged = outpost("feedback", "merge", str(out), str(out), "--out", str(tmp_path / "all.jsonl"))
    assert merged.returncode == 0 and "1 duplicates dropped" in merged.stdout
    info = json.loads(outpost("feedback", "info", "--bundles", str(bundles), "--json").stdout)
    assert info["entries"] == 2
    assert outpost("feedback", "wipe", "--bundles", str(bundles), "--yes").returncode == 0
    assert list(log.entries()) == []
    usage = outpost("feedback", "info")
    assert usage.returncode == 2 and "--bundles DIR or --log DIR" in usage.stderr
    bad = outpost(
        "feedback", "merge", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x")
    )
    assert (
        bad.returncode == 1 and bad.stderr.count("\n") == 1 and "Error: cannot read" in bad.stderr
    )
