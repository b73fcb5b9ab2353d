"""Training data checks (file:line errors) and assistant-only loss masks."""

import pytest

from outpost.export.llm.random_model import train_tokenizer
from outpost.runtime.ask.prompt import REFUSAL
from outpost.runtime.bundle.store import ChunkStore, write_store
from outpost.runtime.errors import InputError
from outpost.trainer.data import (
    IGNORE,
    GroundedConfig,
    build_grounded,
    load_conversations,
    load_qa,
    memory_store,
    quote,
    tokenize,
)


@pytest.mark.parametrize(
    "lines, message",
    [
        ([], "is empty"),
        (
            [
                '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}',
                "{not json",
            ],
            ":2: not valid JSON",
        ),
        (
            ['{"messages": [{"role": "robot", "content": "hi"}]}'],
            ":1: message 1 has unknown role 'robot'",
        ),
        (
            ['{"messages": [{"role": "user", "content": "hi"}]}'],
            ":1: conversation has no assistant turn",
        ),
        (
            ['{"prompt": "hi", "completion": 3}'],
            ':1: "prompt" and "completion" must both be strings',
        ),
        (['{"text": "hi"}'], ':1: expected "messages", or "prompt" and "completion"'),
        (['["a list"]'], ":1: each line must be a JSON object"),
        (
            [
                '{"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]}'
            ],
            ":1: message 1 is 'assistant' out of order",
        ),
        (
            [
                '{"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"}, '
                '{"role": "assistant", "content": "b"}]}'
            ],
            ":1: message 2 is 'system' out of order",
        ),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, lines, message):
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines))
    with pytest.raises(InputError) as e:
        load_conversations(path)
    assert str(path) in str(e.value) and message in str(e.value)


def test_qa_lines_need_answer_and_source(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "What?", "answer": "That."}\n')
    with pytest.raises(InputError, match=r":1: an answerable question needs"):
        load_qa(path)


@pytest.fixture(scope="module")
def tokenizer(examples_docs):
    corpus = [p.read_text() for p in examples_docs.rglob("*.md")]
    return train_tokenizer(corpus * 3)


def test_loss_only_on_assistant_tokens(tokenizer):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "How often is the filter replaced?"},
        {"role": "assistant", "content": "Every 500 hours."},
        {"role": "user", "content": "And the oil?"},
        {"role": "assistant", "content": "Every 4,000 hours."},
    ]
    ex, truncated = tokenize(tokenizer, messages, 512)
    assert not truncated
    learned = [t for t, label in zip(ex.input_ids, ex.labels) if label != IGNORE]
    text = tokenizer.decode(learned)
    assert "Every 500 hours." in text and "Every 4,000 hours." in text
    assert "filter replaced" not in text and "Be brief" not in text and "<|user|>" not in text
    assert text.count("<|end|>") == 2  # the end-of-turn marker is learned, so the model stops


def test_truncation_is_reported(tokenizer):
    messages = [{"role": "user", "content": "word " * 300}, {"role": "assistant", "content": "ok"}]
    ex, truncated = tokenize(tokenizer, messages, 64)
    assert truncated and len(ex.input_ids) == 64


def test_grounded_examples_use_the_runtime_layout(tmp_path, examples_docs):
    qa = tmp_path / "qa.jsonl"
    qa.write_text(
        '{"question": "How often must the hydraulic filter be replaced?", "answer": "Every 500 hours.", "source_path": "press/px200-maintenance.md"}\n'
        '{"question": "What is the capital of Canada?", "answerable": false}\n'
    )
    conversations = build_grounded(
        load_qa(qa),
        [str(examples_docs)],
        GroundedConfig(refusal_share=1.0, variants=2, min_passages=3),
        lambda m: None,
    )
    *answers, refusal_same_q, refusal_neg, refusal_neg2 = conversations
    assert len(answers) == 2
    for answer in answers:  # each variant holds the right passage and cites it
        assert answer[-1]["content"].startswith("Every 500 hours. [")
        n = int(answer[-1]["content"].split("[")[1].rstrip("]"))
        user = answer[1]["content"]
        block = user.split(f"[{n}] (")[1]
        assert block.startswith("press/px200-maintenance.md") and "500 operating hours" in block
        assert user.count("\n[") + user.startswith("[") >= 3  # several passages, as at run time
    assert answers[0][1]["content"] != answers[1][1]["content"]
    assert refusal_same_q[-1]["content"] == REFUSAL
    assert "500 operating hours" not in refusal_same_q[1]["content"]
    assert refusal_neg[-1]["content"] == refusal_neg2[-1]["content"] == REFUSAL


@pytest.mark.slow
def test_grounded_examples_in_the_windows_layout(tmp_path, examples_docs):
    """The trainer shows the model what the runtime's reader shows: sentence windows, the one
    holding the answer among them and cited."""
    from outpost.trainer.data import SentenceEmbedder

    qa = tmp_path / "qa.jsonl"
    qa.write_text(
        '{"question": "How often must the hydraulic filter be replaced?", "answer": "Every 500 hours.", "source_path": "press/px200-maintenance.md"}\n'
    )
    config = GroundedConfig(
        refusal_share=0.0, variants=2, layout="windows", embedder=SentenceEmbedder()
    )
    conversations = build_grounded(load_qa(qa), [str(examples_docs)], config, lambda m: None)
    assert len(conversations) == 2
    for c in conversations:
        n = int(c[-1]["content"].split("[")[1].rstrip("]"))
        block = c[1]["content"].split(f"[{n}] (")[1].split("\n\n[")[0]
        assert block.startswith("press/px200-maintenance.md") and "500 operating hours" in block
        chunk_sized = max(len(b) for b in c[1]["content"].split("\n\n["))
        assert chunk_sized < 700  # windows, not whole chunks


@pytest.mark.parametrize("prefix", [True, False])
def test_the_trainers_document_frequencies_are_the_runtime_stores(tmp_path, prefix):
    """The trainer's windows weigh words as the device does: its in-memory store counts what
    a bundle's chunk store file counts, `prefix` meaning the same (a word of letters as a
    prefix; numbers, codes and several words whole)."""
    chunks = [
        ("Battery", "Charging the battery: charge for 8 h."),
        ("Filters", "Replace filter HF-2210 every 500 hours."),
        ("Ram", "The ram_stroke is 2.5 mm; the Überdruck valve opens."),
        ("Chargers", "The charger-stand holds two chargers."),
        ("Operators", "Happy operators, happy presses."),
    ]
    write_store([("doc.md", h, 0, len(t), t) for h, t in chunks], tmp_path / "chunks.sqlite")
    runtime = ChunkStore(tmp_path / "chunks.sqlite")
    memory = memory_store([f"{h} {t}" for h, t in chunks])
    assert memory.count() == runtime.count() == len(chunks)
    terms = ["charg", "charging", "charger", "hf", "hf-2210", "2210", "500", "2.5", "ram_stroke"]
    terms += ["uberdruck", "überdruck", "replace filter", "filter every", "happi", "happy", ""]
    counted = {t: memory.document_frequency(t, prefix=prefix) for t in terms}
    assert counted == {t: runtime.document_frequency(t, prefix=prefix) for t in terms}
    assert counted["charg"] == (2 if prefix else 0) and counted["hf"] == (1 if prefix else 0)
    assert counted["charging"] == counted["hf-2210"] == counted["replace filter"] == 1
    runtime.close()


def test_quote_takes_the_passage_line_that_holds_the_answer():
    passage = (
        "Code | Meaning | Action\nE-101 | Oil temperature high | Check the cooler.\n"
        "E-104 | Low oil level | Top up with ISO VG 46 oil.\n"
        "Check the oil level first, then clean the suction\nstrainer (part SS-90). Then restart."
    )
    assert quote("Low oil level: top up.", "What does alarm E-104 mean?", passage) == (
        "E-104: Low oil level; Top up with ISO VG 46 oil."
    )
    # a sentence wrapped over two lines is rejoined; the answer's trailing dot does not matter
    assert quote("SS-90.", "Which strainer part?", passage) == (
        "Check the oil level first, then clean the suction strainer (part SS-90)."
    )
    assert quote("Forty bar.", "What pressure?", passage) == "Forty bar."  # nothing to quote


def test_dropped_examples_are_not_called_truncated(tokenizer, capsys):
    """An example cut before its answer has nothing to learn: it is dropped and said so."""
    from outpost.runtime import log
    from outpost.trainer.config import TrainConfig
    from outpost.trainer.recipe import _rows

    short = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]
    long_answer = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "word " * 200},
    ]
    long_question = [
        {"role": "user", "content": "word " * 200},
        {"role": "assistant", "content": "yes"},
    ]
    config = TrainConfig(data="d", out="o", max_length=40)
    log.quiet = False
    rows = _rows(config, tokenizer, [short, long_answer, long_question], "d.jsonl")
    err = capsys.readouterr().err
    assert len(rows) == 2
    assert "1 of 3 examples truncated to 40 tokens" in err
    assert "1 of 3 examples dropped: no answer token within 40 tokens" in err
