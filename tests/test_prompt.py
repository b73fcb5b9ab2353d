"""The shared prompt layout and the context-budget fitting."""

import pytest

from outpost.runtime.ask.prompt import REFUSAL, Passage, build_messages, fit_messages, is_refusal
from outpost.runtime.errors import InputError


def words(messages):  # a real, simple token count: one token per word
    return sum(len(m["content"].split()) + 2 for m in messages)


PASSAGES = [Passage(f"doc{i}.md", f"Section {i}", " ".join(["word"] * 50)) for i in range(4)]


def test_layout_numbers_passages_and_keeps_question_last():
    messages = build_messages("How hot?", PASSAGES[:2])
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[-1]["content"]
    assert user.index("[1] (doc0.md > Section 0)") < user.index("[2] (doc1.md > Section 1)")
    assert user.rstrip().endswith("Question: How hot?")
    assert REFUSAL in messages[0]["content"]


def test_fit_drops_trailing_passages_not_the_question():
    full = words(build_messages("How hot is it?", PASSAGES))
    messages, kept = fit_messages("How hot is it?", PASSAGES, [], words, full - 10)
    assert kept == 3
    assert words(messages) <= full - 10
    assert "Question: How hot is it?" in messages[-1]["content"]


def test_fit_drops_history_before_passages():
    history = [{"role": "user", "content": "x " * 40}, {"role": "assistant", "content": "y " * 40}]
    budget = words(build_messages("Q?", PASSAGES))
    messages, kept = fit_messages("Q?", PASSAGES, history, words, budget)
    assert kept == 4 and len(messages) == 2


def test_fit_shortens_a_single_passage_to_fit():
    bare = words(build_messages("Q?", []))
    messages, kept = fit_messages("Q?", PASSAGES[:1], [], words, bare + 20)
    assert kept == 1 and words(messages) <= bare + 20
    assert "word" in messages[-1]["content"]


def test_question_longer_than_budget_is_an_error():
    with pytest.raises(InputError, match="over the 30-token budget"):
        fit_messages("why " * 100, PASSAGES, [], words, 30)


def test_refusal_detection():
    assert is_refusal(REFUSAL)
    assert not is_refusal("Replace the filter every 500 hours [1].")


def test_loop_detection_stops_repeating_answers():
    from outpost.runtime.ask.assistant import looping

    sentence = "The emergency stop procedure is described in the incident document. "
    assert not looping("Replace the HF-2210 filter every 500 hours [1].")
    assert not looping(sentence)
    assert looping(sentence * 3)
