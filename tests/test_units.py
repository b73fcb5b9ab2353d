"""Fast in-process tests of single mechanisms: retrieval fusion, citations, threshold
calibration, index dtype choice, archive members, JSON-lines errors, training settings."""

import io
import tarfile

import numpy as np
import pytest

from outpost.export.documents.chunk import Chunk
from outpost.export.retrieval.index import build_index, calibrate_threshold
from outpost.runtime.ask.assistant import Answer, cite, looping
from outpost.runtime.ask.prompt import check_question
from outpost.runtime.ask.question import analyse
from outpost.runtime.ask.retrieve import Hit, Retriever
from outpost.runtime.bundle.install import Limits, _safe_members
from outpost.runtime.bundle.store import write_store
from outpost.runtime.errors import BundleError, InputError, UsageError
from outpost.runtime.files import read_jsonl


class FixedEmbedder:
    """Vectors chosen by the test: retrieval is what is under test here, not the embedder."""

    def __init__(self, table: dict[str, np.ndarray]):
        self.table = table

    def embed(self, texts):
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def small_index(tmp_path):
    chunks = [
        Chunk("a.md", "Filters", "Replace the hydraulic filter every 500 hours.", 0, 10),
        Chunk("b.md", "Alarms", "Alarm E-305 means oil temperature high.", 0, 10),
        Chunk("c.md", "Belts", "Belt tension 10 mm deflection.", 0, 10),
    ]
    vectors = np.stack([unit([1, 0, 0, 0]), unit([0, 1, 0, 0]), unit([0, 0, 1, 0])])
    build_index(vectors, vectors, tmp_path / "index.usearch", lambda _: None)
    write_store(
        [(c.source, c.heading, c.start, c.end, c.text) for c in chunks], tmp_path / "chunks.sqlite"
    )
    return tmp_path


def test_dense_and_keyword_hits_are_fused(small_index):
    # The question's vector points at the filter chunk, its words name alarm E-305.
    question = "what does E-305 mean"
    emb = FixedEmbedder({question: unit([0.9, 0.1, 0.4, 0])})
    r = Retriever(small_index / "index.usearch", small_index / "chunks.sqlite", 4, emb)
    dense = [h.source for h in r.search(question, 3, hybrid=False)]
    hybrid = [h.source for h in r.search(question, 3)]
    assert dense == ["a.md", "c.md", "b.md"]
    assert hybrid == ["b.md", "a.md", "c.md"]  # the exact name lifts the keyword hit to the top
    scores = {h.source: h.score for h in r.search(question, 3)}
    assert scores["a.md"] == pytest.approx(
        float(unit([0.9, 0.1, 0.4, 0]) @ unit([1, 0, 0, 0])), abs=1e-3
    )


def test_without_dense_weight_keyword_hits_come_first_and_dense_fills_up(small_index):
    # An embedder that does not read the question's language: its words find the passage.
    question = "what does E-305 mean"
    emb = FixedEmbedder({question: unit([0.9, 0.1, 0.4, 0])})
    r = Retriever(small_index / "index.usearch", small_index / "chunks.sqlite", 4, emb)
    hits = r.search(analyse(question, dense_weight=0.0), 3)
    assert [h.source for h in hits] == ["b.md", "a.md", "c.md"]
    dense_only = r.search(analyse(question, dense_weight=0.0), 3, hybrid=False)
    assert [h.source for h in dense_only] == ["a.md", "c.md", "b.md"]  # nothing else to go by


def test_index_takes_the_smallest_dtype_that_keeps_recall(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    info = build_index(vectors, vectors[:50], tmp_path / "i.usearch", lambda _: None)
    assert info["recall_at_10"][info["dtype"]] >= info["min_recall"]
    assert list(info["recall_at_10"])[-1] == info["dtype"]  # stopped at the first that passed
    assert (tmp_path / "i.usearch").stat().st_size > 0


def test_threshold_sits_between_off_topic_and_in_corpus():
    off = np.linspace(0.05, 0.20, 20)
    inside = np.linspace(0.40, 0.90, 50)
    threshold, stats = calibrate_threshold(inside, off)
    assert float(np.percentile(off, 95)) < threshold <= float(np.percentile(inside, 5))
    assert stats["off_topic_questions"] == 20
    # Overlapping scores: never above the 5th percentile of real questions.
    threshold, _ = calibrate_threshold(np.linspace(0.1, 0.9, 50), np.linspace(0.3, 0.6, 20))
    assert threshold <= float(np.percentile(np.linspace(0.1, 0.9, 50), 5))


def test_citations_mark_what_the_answer_names():
    hits = [Hit(i, 0.5, f"s{i}.md", "", "text") for i in range(3)]
    cited = cite(hits, "Replace it every 500 hours [2].")
    assert [c.cited for c in cited] == [False, True, False] and cited[1].n == 2
    answer = Answer("q", citations=cited)
    assert [c.n for c in answer.shown_citations()] == [2]
    answer.citations = cite(hits, "No number named.")
    assert [c.n for c in answer.shown_citations()] == [1, 2, 3]  # none named: all given
    answer.declined = True
    assert answer.shown_citations() == []


def test_looping_answers_are_caught():
    assert not looping("The pressure is 280 bar. " * 2)
    assert looping("10.01 " * 40)


def test_questions_lose_control_characters():
    assert check_question("  What is\x00 E-305?\x07\n") == "What is E-305?"
    with pytest.raises(InputError, match="question is empty"):
        check_question("\x00\x01 \n")


def archive(*members) -> tarfile.TarFile:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "/etc/passwd"
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    buf.seek(0)
    return tarfile.open(fileobj=buf, mode="r")


@pytest.mark.parametrize(
    "name, kind, message",
    [
        ("bundle/../../evil", tarfile.REGTYPE, "points outside"),
        ("/etc/cron.d/x", tarfile.REGTYPE, "points outside"),
        ("other/bundle.json", tarfile.REGTYPE, "not under bundle/"),
        ("bundle/link", tarfile.SYMTYPE, "is a link"),
        ("bundle/dev", tarfile.CHRTYPE, "device or special file"),
        ("bundle/fifo", tarfile.FIFOTYPE, "device or special"),
    ],
)
def test_crafted_archive_members_are_refused(name, kind, message):
    with pytest.raises(BundleError, match=message):
        _safe_members(archive((name, kind, b"x")), Limits())


def test_archive_limits():
    members = [(f"bundle/f{i}", tarfile.REGTYPE, b"x" * 10) for i in range(5)]
    assert len(_safe_members(archive(*members), Limits())) == 5
    with pytest.raises(BundleError, match="more than 4 entries"):
        _safe_members(archive(*members), Limits(max_files=4))
    with pytest.raises(BundleError, match="per-file limit"):
        _safe_members(archive(*members), Limits(max_file_bytes=5))
    with pytest.raises(BundleError, match="size limit"):
        _safe_members(archive(*members), Limits(max_total_bytes=30))


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"a": 1}\n{oops\n', ":2: not valid JSON"),
        ("[1, 2]\n", ":1: each line must be a JSON object"),
        ("\n\n", "is empty"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path, text, message):
    p = tmp_path / "q.jsonl"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InputError, match=message):
        read_jsonl(p)


def test_training_flags_are_made_from_the_settings():
    from dataclasses import fields

    from outpost.trainer.cli import train_cmd
    from outpost.trainer.config import TrainConfig

    flags = {p.name for p in train_cmd.params}
    assert {f.name for f in fields(TrainConfig)} <= flags
    assert flags - {f.name for f in fields(TrainConfig)} == {"recipe", "resume", "as_json"}
    for p in train_cmd.params:
        if p.name in {f.name for f in fields(TrainConfig)}:
            assert p.help, p.name


def test_training_settings_precedence_and_errors(tmp_path):
    from outpost.trainer.config import resolve_config

    recipe = tmp_path / "r.yaml"
    recipe.write_text("rank: 8\nlearning_rate: 1\ntarget_modules: q_proj, v_proj\n")
    config = resolve_config(str(recipe), {"data": "d", "out": "o", "rank": 4, "epochs": None})
    assert config.rank == 4 and config.learning_rate == 1.0 and config.epochs == 2.0
    assert config.target_modules == ["q_proj", "v_proj"]
    recipe.write_text("rank: eight\n")
    with pytest.raises(UsageError, match="--rank must be int"):
        resolve_config(str(recipe), {"data": "d", "out": "o"})
    with pytest.raises(
        UsageError, match="--data is required.*--method must be one of.*--rank must be at least 1"
    ):
        resolve_config(None, {"rank": 0, "method": "magic", "out": "o"})


def test_int8_embedder_check_finds_each_chunk_from_its_own_sentence():
    """The int8 embedder's corpus check (export/retrieval/embedder.py): a question-sized sentence from the
    middle of a chunk, and the share of such sentences whose own chunk ranks in the top 4."""
    from outpost.export.retrieval.embedder import probe_sentence, self_hit_rate

    text = "Filters\nShort.\nReplace the hydraulic filter every 500 hours. Check the seal on the filter housing weekly."
    assert probe_sentence(text) == "Check the seal on the filter housing weekly."
    assert probe_sentence("two words") == "two words"
    rng = np.random.default_rng(0)
    chunks = rng.normal(size=(40, 16)).astype(np.float32)
    assert self_hit_rate(chunks, chunks + 0.01) == 1.0
    far = np.roll(chunks, 1, axis=0)  # every query is another chunk's vector
    assert self_hit_rate(chunks, far, k=1) == 0.0
    assert 0.0 < self_hit_rate(chunks, far, k=40) == 1.0


def test_new_folder_replaces_all_at_once_or_not_at_all(tmp_path):
    from outpost.runtime.files import new_folder

    out = tmp_path / "bundle"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), new_folder(out) as tmp:
        (tmp / "new.txt").write_text("half")
        raise RuntimeError("export failed")
    assert [p.name for p in out.iterdir()] == ["old.txt"]  # untouched
    with new_folder(out) as tmp:
        (tmp / "new.txt").write_text("new")
        assert not (out / "new.txt").exists()  # nothing shows before the end
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no temp or old copy left


def test_an_export_too_big_for_memory_says_so_before_the_builder_is_killed(tmp_path):
    """The model builder holds the saved fp32 weights, at int4/int8 a second fp32 copy, and with
    k-quant ~22 bytes for each parameter of the largest matrix (a 200k-token LM head). Past what
    is available, the log says so."""
    import json

    from outpost.export.llm.convert import builder_memory, memory_note

    header = json.dumps(
        {
            "lm_head.weight": {
                "dtype": "F32",
                "shape": [10**4, 10**4],
                "data_offsets": [0, 4 * 10**8],
            }
        }
    ).encode()
    with open(tmp_path / "model.safetensors", "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        f.truncate(4 * 10**9)  # 1B parameters in fp32 (sparse: no disk used)
    gib = 2**30
    assert builder_memory(tmp_path, "fp32") == 4 * 10**9 + gib
    assert builder_memory(tmp_path, "int4", "default") == 8 * 10**9 + gib
    assert builder_memory(tmp_path, "int4", "k_quant_mixed") == 8 * 10**9 + 22 * 10**8 + gib
    note = memory_note(tmp_path, "int4", "k_quant_mixed", available=6 * 10**9)
    assert note and "about 11 GB" in note and "6 GB are available" in note
    assert memory_note(tmp_path, "int4", "k_quant_mixed", available=16 * 10**9) is None
