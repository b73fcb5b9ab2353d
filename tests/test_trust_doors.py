"""What is opened is what was verified (issue 28, cases 1-3).

Case 1: a same-bytes copy renamed over a listed file (so every name still verifies) and a decoy
put at the name the kernel gives the unlinked original, "<name> (deleted)": SQLite followed
that text and answered from the decoy. Each listed file is swapped this way at each step
between opening and the first answer; the answer is the genuine one or an error, never the
decoy's. Case 2: `export --update` from a previous bundle that was tampered with. Case 3: an
empty trust variable.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from conftest import EXAMPLES, export, outpost
from outpost.runtime.ask.assistant import Assistant
from outpost.runtime.bundle.verify import open_verified
from outpost.runtime.config import AskConfig
from outpost.runtime.errors import OutpostError

pytestmark = pytest.mark.slow
QUESTION = "What is the maximum system pressure of the PX-200 press?"
GENUINE, FORGED = "280 bar", "950 bar"


def forged_store(store: Path, out: Path) -> Path:
    """A valid chunk store that says 950 bar where the manual says 280."""
    shutil.copyfile(store, out)
    db = sqlite3.connect(out)
    changed = db.execute(
        "UPDATE chunks SET text = replace(text, ?, ?) WHERE text LIKE ?",
        (GENUINE, FORGED, f"%{GENUINE}%"),
    ).rowcount
    db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild')")
    db.commit()
    db.close()
    assert changed, "the press manual no longer says 280 bar"
    return out


def swap(folder: Path, rel: str, decoy: Path) -> None:
    """Rename a same-bytes copy over `rel` (a new inode; the pinned one is unlinked) and put the
    decoy where /proc/self/fd's link now points: '<path> (deleted)'."""
    target = folder / rel
    fresh = target.with_name(target.name + ".fresh")
    shutil.copyfile(target, fresh)
    os.replace(fresh, target)
    shutil.copyfile(decoy, target.with_name(target.name + " (deleted)"))


def shown(answer) -> str:
    return " ".join([answer.text, *(e.text for e in answer.evidence)])


@pytest.fixture(scope="module")
def decoys(tiny_bundle, tiny_bundle_b, tmp_path_factory) -> dict[str, Path]:
    """Per listed file: what an attacker would load instead (the forged store; for the other
    files, the other bundle's file of the same name, or random bytes)."""
    where = tmp_path_factory.mktemp("decoys")
    files = json.loads((tiny_bundle / "bundle.json").read_text())["files"]
    out = {}
    for rel in files:
        decoy = where / hashlib.sha256(rel.encode()).hexdigest()[:12]
        if rel == "chunks.sqlite":
            forged_store(tiny_bundle / rel, decoy)
        elif (tiny_bundle_b / rel).is_file():
            shutil.copyfile(tiny_bundle_b / rel, decoy)
        else:
            decoy.write_bytes(os.urandom(4096))
        out[rel] = decoy
    return out


def test_the_attack_reaches_a_store_opened_by_name(tiny_bundle, decoys, tmp_path):
    """The swap works against a loader that opens the view's name: the test's attack is real."""
    from outpost.runtime.bundle.store import ChunkStore

    folder = tmp_path / "b"
    shutil.copytree(tiny_bundle, folder)
    bundle = open_verified(folder)
    try:
        swap(folder, "chunks.sqlite", decoys["chunks.sqlite"])
        store = ChunkStore(bundle.file("chunks.sqlite"))
        texts = " ".join(t for _, _, _, _, _, t in store.rows())
        store.close()
    finally:
        bundle.close()
    assert FORGED in texts


STEPS = ("after opening", "after verification", "before the first answer")


@pytest.mark.parametrize("step", STEPS)
def test_swapped_files_never_answer(tiny_bundle, signing_key, decoys, tmp_path, step):
    config = AskConfig(trust=[f"{signing_key}.pub"], threads=1)
    baseline_bundle = open_verified(tiny_bundle, [Path(t) for t in config.trust])
    genuine = Assistant(baseline_bundle, config).ask(QUESTION)
    baseline_bundle.close()
    assert GENUINE in shown(genuine) and FORGED not in shown(genuine)
    outcomes = {}
    for rel in sorted(decoys):
        folder = tmp_path / hashlib.sha256(rel.encode()).hexdigest()[:8]
        shutil.copytree(tiny_bundle, folder)
        trusted = [Path(t) for t in config.trust]
        try:
            if step == "after opening":
                from outpost.runtime.bundle.open import open_pinned
                from outpost.runtime.bundle.verify import verify_on_open

                bundle = open_pinned(folder, view=True)
                swap(folder, rel, decoys[rel])
                verify_on_open(bundle, trusted)
                assistant = Assistant(bundle, config)
            elif step == "after verification":
                bundle = open_verified(folder, trusted)
                swap(folder, rel, decoys[rel])
                assistant = Assistant(bundle, config)
            else:
                bundle = open_verified(folder, trusted)
                assistant = Assistant(bundle, config)
                swap(folder, rel, decoys[rel])
            answer = assistant.ask(QUESTION)
            outcomes[rel] = "same" if shown(answer) == shown(genuine) else shown(answer)
            bundle.close()
        except OutpostError as e:
            outcomes[rel] = f"refused: {e}"
        shutil.rmtree(folder)
    wrong = {rel: o for rel, o in outcomes.items() if o != "same" and not o.startswith("refused")}
    assert not wrong, wrong
    assert all(FORGED not in o for o in outcomes.values())


def tampered_previous(tiny_bundle: Path, folder: Path, resign: bool = False) -> Path:
    """The attack of case 2: the previous bundle's store forged, its sha256 in bundle.json
    updated to match, bundle.sig dropped."""
    shutil.copytree(tiny_bundle, folder)
    store = folder / "chunks.sqlite"
    forged_store(tiny_bundle / "chunks.sqlite", store)
    manifest = json.loads((folder / "bundle.json").read_text())
    data = store.read_bytes()
    manifest["files"]["chunks.sqlite"] = {
        **manifest["files"]["chunks.sqlite"],
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    (folder / "bundle.json").write_text(json.dumps(manifest, indent=2))
    (folder / "bundle.sig").unlink()
    return folder


def _update(tiny_phi3, previous: Path, out: Path, *extra: str):
    return export(
        EXAMPLES / "docs" / "press",
        out,
        "--base",
        str(tiny_phi3),
        "--update",
        str(previous),
        *extra,
    )


def test_update_never_signs_what_was_not_signed(tiny_bundle, tiny_phi3, signing_key, tmp_path):
    previous = tampered_previous(tiny_bundle, tmp_path / "prev")
    for extra in (["--sign", f"{signing_key}.key"], ["--trust", f"{signing_key}.pub"]):
        out = tmp_path / "new"
        done = _update(tiny_phi3, previous, out, *extra)
        assert done.returncode == 1, done.stdout[-500:]
        lines = done.stderr.strip().splitlines()
        assert lines[-1].startswith("Error: --update") and "not signed" in lines[-1]
        assert sum(line.startswith("Error:") for line in lines) == 1
        assert not out.exists()


def test_update_checks_hashes_when_nothing_is_signed(tiny_bundle, tiny_phi3, tmp_path):
    previous = tmp_path / "prev"
    shutil.copytree(tiny_bundle, previous)
    forged_store(tiny_bundle / "chunks.sqlite", previous / "chunks.sqlite")  # manifest untouched
    out = tmp_path / "new"
    done = _update(tiny_phi3, previous, out)
    assert done.returncode == 1
    assert "chunks.sqlite has changed" in done.stderr.strip().splitlines()[-1]
    assert not out.exists()


def test_update_from_a_signed_previous_keeps_its_documents(
    tiny_bundle, tiny_phi3, signing_key, tmp_path
):
    out = tmp_path / "new"
    done = _update(tiny_phi3, tiny_bundle, out, "--sign", f"{signing_key}.key")
    assert done.returncode == 0, done.stderr[-1500:]
    update = json.loads((out / "bundle.json").read_text())["build"]["update"]
    assert update["documents_kept"] > 0 and update.get("documents_read", 0) == 0
    answered = outpost("ask", str(out), QUESTION, "--json", "--trust", f"{signing_key}.pub")
    assert answered.returncode == 0 and GENUINE in answered.stdout


def test_an_empty_trust_variable_is_an_error(tiny_bundle, tmp_path):
    folder = tmp_path / "b"
    shutil.copytree(tiny_bundle, folder)
    (folder / "bundle.sig").unlink()
    for value in ("", "  "):
        done = outpost("ask", str(folder), QUESTION, env={"OUTPOST_TRUSTED_KEYS": value})
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.strip().splitlines() == [
            "Error: OUTPOST_TRUSTED_KEYS is set but empty, which would turn trust off; name the "
            "release key's .pub file or folder, or unset it (unset OUTPOST_TRUSTED_KEYS)"
        ]
