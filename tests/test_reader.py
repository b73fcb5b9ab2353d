"""The reader's mechanisms: sentence units with exact offsets, the support check, the number
copying constraint, sentence-by-sentence showing, evidence quotes and evidence-based declines."""

import json
import sqlite3

import numpy as np
import pytest

from conftest import outpost
from outpost.runtime.ask.assistant import Shown
from outpost.runtime.ask.question import analyse, as_question
from outpost.runtime.ask.rank import FEATURES, line_features
from outpost.runtime.ask.retrieve import Hit, keyword_terms
from outpost.runtime.ask.support import NumberCopy, check, facts
from outpost.runtime.ask.terms import coverage, terms
from outpost.runtime.ask.units import split_units
from outpost.runtime.language.lexicon import lexicon


def test_units_keep_exact_offsets():
    text = "Specifications:\n- Maximum pressure: 280 bar. Oil: HLP 46.\nCode | Meaning\nE-305 | Oil hot"
    units = split_units(text, 3)
    assert [u.text for u in units] == [
        "Specifications:",
        "- Maximum pressure: 280 bar.",
        "Oil: HLP 46.",
        "Code | Meaning",
        "E-305 | Oil hot",
    ]
    assert all(text[u.start : u.end] == u.text and u.hit == 3 for u in units)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a stop inside parentheses does not end the sentence
        (
            "Unngå store partisjoner (over, for eksempel. 20 GiB), fordi fsck tar tid. Neste.",
            ["Unngå store partisjoner (over, for eksempel. 20 GiB), fordi fsck tar tid.", "Neste."],
        ),
        # abbreviations in any of the languages, and initials
        ("Bruk f.eks. Debian. Se s. 4. Ok.", ["Bruk f.eks. Debian.", "Se s. 4.", "Ok."]),
        (
            "See fig. 3 and e.g. J. Smith. Then stop.",
            ["See fig. 3 and e.g. J. Smith.", "Then stop."],
        ),
        # a capital of any alphabet starts a sentence; a version number ends one
        (
            "Sjekk oljen. Årlig service. Version 1.2. Done.",
            ["Sjekk oljen.", "Årlig service.", "Version 1.2.", "Done."],
        ),
        ("Run make. then stop.", ["Run make. then stop."]),
    ],
)
def test_sentences_end_where_a_reader_would_end_them(text, expected):
    assert [u.text for u in split_units(text)] == expected


@pytest.mark.parametrize(
    ("question", "lines", "language"),
    [
        ("Where are the graphs?", ["It draws graphs daily.", "Graphs: https://www/munin/."], "en"),
        ("Hvor finner jeg grafene?", ["Den tegner grafer.", "Grafene ligger i ~root/graf/."], "nb"),
        (
            "Waarom geen grote partities?",
            ["Maak geen grote partities.", "Geen grote partities, omdat fsck lang duurt."],
            "nl",
        ),
        (
            "How long does a charge take?",
            ["p. 1: These instructions cover the charger.", "A charge takes 8 hours."],
            "en",
        ),
    ],
)
def test_the_line_that_gives_the_kind_of_answer_asked_for_is_marked(question, lines, language):
    lex = lexicon(language)
    hits = [Hit(0, 0.5, "m.md", "", " ".join(lines))]
    units = split_units(hits[0].text)
    assert [u.text for u in units] == lines
    rows = line_features(question, units, hits, np.zeros(len(units)), {}, lex)
    assert rows[:, FEATURES.index("answer_type")].tolist() == [0.0, 1.0]


def test_facts_are_numbers_identifiers_paths_code_and_quotes():
    answer = 'Set VTYSH_PAGER to "less", port 2605 [2]; edit /etc/services and run `vtysh -b` (E-305, 6.5 bar).'
    assert facts(answer) == [
        "vtysh -b",
        "less",
        "/etc/services",
        "VTYSH_PAGER",
        "E-305",
        "2605",
        "6.5",
    ]


def test_a_fabricated_number_is_caught():
    passages = ["bgpd 2605/tcp # BGPd vty", "Default timeout value is 10 minutes."]
    assert check("The port is 2605 [1].", passages).ok
    bad = check("The port is 2601 and the timeout 10 minutes.", passages)
    assert bad.unsupported == ["2601"]
    assert check(
        "Pressure 6,5 bar.", ["pressure of 6.5 bar"]
    ).ok  # a decimal comma is the same number
    assert not check("Pressure 5.6 bar.", ["pressure of 6.5 bar"]).ok  # the same digits, swapped
    assert check(
        "Use PX-200 settings.", [], question="How do I set up the PX-200?"
    ).ok  # from the question


def test_identifiers_and_quotes_must_be_in_the_passages():
    assert check("Set VTYSH_PAGER.", ["the VTYSH_PAGER variable"]).ok
    assert check('Run "gammu-smsd".', ["run gammu-smsd as a daemon"]).ok
    assert check("Run `gammu identify`.", ["gammu identify"]).ok
    assert check("Edit /etc/gammurc.", ["the file /etc/gammurc"]).ok
    assert check("Set SMSD_PIN.", ["set PIN"]).unsupported == ["SMSD_PIN"]


def copy_processor(runs):
    pure = {i: str(i) for i in range(10)}  # token i is the digit i
    holding = np.array(
        list(range(10)) + [12], dtype=np.int64
    )  # 12: a token holding a digit ("x86")
    return NumberCopy(holding, pure, set(runs))


def logits_preferring(*order, size=20):
    row = np.zeros(size, dtype=np.float32)
    for rank, token in enumerate(order):
        row[token] = 10.0 - rank
    return row


def test_numbers_are_copied_never_invented():
    p = copy_processor({"2605", "10"})
    # Nothing written yet: 2 and 1 may start a number, 7 may not; the mixed token 12 never.
    out = p([15], logits_preferring(7, 12, 2))
    assert int(np.argmax(out)) == 2
    # "26" so far: 0 continues to 260(5); a non-digit (token 15) may not end an unfinished number.
    out = p([2, 6], logits_preferring(15, 1, 0))
    assert int(np.argmax(out)) == 0
    # "2605" is complete: it may end (15), and no digit may follow it.
    out = p([2, 6, 0, 5], logits_preferring(3, 15))
    assert int(np.argmax(out)) == 15
    assert p.measured()["numbers_blocked"] == 3


def test_citation_numbers_stay_within_the_passages():
    pure = {i: str(i) for i in range(10)}
    p = NumberCopy(
        np.arange(10, dtype=np.int64), pure, {"101", "2605"}, opens=frozenset({11}), passages=4
    )
    # After "[" (token 11) only 1-4 may follow, even though 101 is a number of the passages.
    out = p([15, 11], logits_preferring(7, 3))  # no [7] with 4 passages
    assert int(np.argmax(out)) == 3
    out = p([15, 11, 1], logits_preferring(0, 15))  # "[1" is complete: no "[10", "[101"
    assert int(np.argmax(out)) == 15
    out = p([15], logits_preferring(1, 2))  # outside a citation 1(01) is still allowed
    assert int(np.argmax(out)) == 1


def test_sentences_are_shown_only_once_checked():
    seen = []
    shown = Shown(seen.append, lambda text: check(text, ["The port is 2605."]))
    for piece in ["The port ", "is 2605. ", "It was 2601", " before."]:
        assert shown.add(piece)  # the last sentence has not ended yet
    assert not shown.finish()
    assert seen == ["The port is 2605. "] and shown.failed == "It was 2601 before."
    plain = Shown(seen.append)
    assert plain.add("anything 999") and plain.text == "anything 999"


def test_coverage_weighs_rare_terms():
    weights = {"bluetooth": 5.0, "firmware": 2.0, "flash": 1.0}
    assert coverage(weights, "Flash the firmware over USB.") == pytest.approx(3 / 8)
    assert coverage(weights, "Bluetooth pairing and firmware flashing") == 1.0
    # word forms meet in a crude stem (a prefix), question words drop out
    assert terms("How often are the filters replaced? Every 500 hours") == {
        "filt",
        "replac",
        "every",
        "500",
        "hour",
    }


@pytest.mark.slow
def test_ask_shows_answer_evidence_and_source(smol_bundle):
    done = outpost(
        "ask", str(smol_bundle), "What is the maximum system pressure of the PX-200?", "--json"
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["evidence"] and answer["support"]["unsupported"] == []
    with sqlite3.connect(smol_bundle / "chunks.sqlite") as db:
        for e in answer["evidence"]:
            (stored,) = db.execute(
                "SELECT text FROM chunks WHERE id = ?", (e["chunk_id"],)
            ).fetchone()
            assert stored[e["start"] : e["end"]] == e["text"]
    assert "280 bar" in answer["evidence"][0]["text"]
    # On screen the manual's line comes first, before anything the model writes.
    shown = outpost("ask", str(smol_bundle), "What is the maximum system pressure of the PX-200?")
    assert shown.stdout.startswith("From the manual (press/px200-overview.md"), shown.stdout
    assert "280 bar" in shown.stdout.split("\n\n")[0]


@pytest.mark.slow
def test_an_absent_answer_is_declined_by_evidence(smol_bundle):
    done = outpost(
        "ask", str(smol_bundle), "How do I pair the PX-200 with a bluetooth headset?", "--json"
    )
    answer = json.loads(done.stdout)
    assert answer["refused"] and answer["declined_by"] == "evidence" and answer["evidence"] == []
    assert answer["unknown_names"] == []
    # Named as a name, the manuals' silence about it is what the user reads.
    done = outpost(
        "ask", str(smol_bundle), "How do I pair the PX-200 with a Bluetooth headset?", "--json"
    )
    answer = json.loads(done.stdout)
    assert answer["declined_by"] == "name" and answer["unknown_names"] == ["Bluetooth"]
    assert answer["answer"].endswith("They never mention Bluetooth.") and answer["evidence"] == []
    assert done.returncode == 0


@pytest.mark.slow
def test_phi3_bundles_read_windows_and_copy_numbers(tiny_bundle):
    """The tiny random Phi-3 (another tokenizer) writes nonsense; still every number it shows is
    one of the bundle's, and every shown sentence passed the check."""
    import re

    with sqlite3.connect(tiny_bundle / "chunks.sqlite") as db:
        corpus = " ".join(r[0] for r in db.execute("SELECT text FROM chunks"))
    known = set(re.findall(r"\d+", corpus))
    for q in (
        "How often must the hydraulic filter be replaced?",
        "What does alarm E-305 mean?",
        "Which oil grade and how many litres?",
    ):
        done = outpost(
            "ask", str(tiny_bundle), q, "--json", "--min-evidence", "0", "--max-new-tokens", "40"
        )
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["support"] is not None or answer["declined_by"] in ("threshold", "model")
        if not answer["refused"]:
            assert set(re.findall(r"\d+", re.sub(r"\[\d+\]", "", answer["answer"]))) <= known | set(
                re.findall(r"\d+", q)
            )


# --- extractive first (issue 18) -------------------------------------------------------------


def _reading(texts: list[str], scores_by_text: dict[str, float]):
    """A Reading over fake hits: each text one chunk; units scored as given (others 0)."""
    import numpy as np

    from outpost.runtime.ask.rank import Reading
    from outpost.runtime.ask.retrieve import Hit

    hits = [Hit(i, 0.5, f"doc{i}.md", f"Manual > Part {i}", t) for i, t in enumerate(texts)]
    units = [u for i, h in enumerate(hits) for u in split_units(h.text, i)]
    scores = np.array([scores_by_text.get(u.text, 0.0) for u in units], dtype=np.float32)
    return Reading(units, scores, [], 1.0), hits


def test_a_quote_carries_the_lines_it_needs_to_be_read_alone():
    from outpost.runtime.ask.quote import quotes

    table = "Service intervals:\nTask | Interval | Part\nReplace air filter | 2,000 hours | AF-750\nReplace oil filter | 4,000 hours | OF-750"
    steps = "To replace the filter:\n- Stop the pump.\n- Open the housing.\n- Fit element HF-2210."
    terms_ = "exec-timeout MINUTE [SECOND]\nSet VTY connection timeout value. Default timeout value is 10 minutes."
    reading, hits = _reading(
        [table, steps, terms_],
        {
            "Replace oil filter | 4,000 hours | OF-750": 3.0,
            "- Fit element HF-2210.": 2.0,
            "Set VTY connection timeout value.": 1.0,
        },
    )
    row, item, described = quotes(reading, hits, limit=3)
    assert row.lead.text == "Task | Interval | Part" and row.text.endswith("OF-750")
    assert item.lead.text == "To replace the filter:" and item.text == "- Fit element HF-2210."
    assert described.text.startswith("exec-timeout MINUTE [SECOND]\nSet VTY")
    for q, h in zip((row, item, described), hits):
        assert h.text[q.start : q.end] == q.text  # verbatim, by offsets
        if q.lead:
            assert h.text[q.lead.start : q.lead.end] == q.lead.text


def test_a_line_ending_in_a_colon_is_quoted_with_the_example_it_promises():
    from outpost.runtime.ask.quote import quotes

    text = (
        "Linux host lookups return one address per name by default. This causes warnings "
        "that the host does not resolve to its address, with both IPv4 and IPv6 entries. "
        "To fix this, turn on support for multiple addresses:\n/etc/host.conf:\n    ...\n"
        "    # machines with several addresses\n    multi on\n    ...\n"
        "Alternatively, set RESOLV_MULTI in the environment of every daemon that resolves."
    )
    reading, hits = _reading([text], {"To fix this, turn on support for multiple addresses:": 2.0})
    (quote,) = quotes(reading, hits, limit=1)
    assert quote.text.startswith("To fix this") and "multi on" in quote.text
    assert "Alternatively" not in quote.text  # the example ends where the indented block does
    assert hits[0].text[quote.start : quote.end] == quote.text


def test_attribution_refuses_stitched_and_echoed_sentences():
    from outpost.runtime.ask.attribute import attributable

    bgp = "bgpd 2605/tcp # BGPd vty"
    ospf = "ospfd 2604/tcp # OSPFd vty"
    q = "Which TCP port does the BGP daemon's VTY use?"
    assert attributable("The BGPd vty uses port 2605.", bgp, q)
    assert not attributable("The BGPd vty uses port 2604.", bgp, q)  # the port of another service
    assert not attributable("The BGPd vty uses port 2605 and OSPFd 2604.", bgp, q)  # stitched
    assert attributable("ospfd uses 2604/tcp.", ospf, q)
    assert not attributable("Which TCP port does the BGP daemon's VTY use?", bgp, q)  # echoed
    assert not attributable("The answer is: [1].", bgp, q)  # says nothing


def test_a_sentence_is_given_up_once_a_finished_fact_cannot_be_attributed():
    from outpost.runtime.ask.attribute import attributable, doomed

    bgp = "bgpd 2605/tcp # BGPd vty"
    q = "Which TCP port does the BGP daemon's VTY use?"
    assert doomed("The BGPd vty uses port 2604 and", bgp, q)  # 2604 is finished and not there
    assert not doomed("The BGPd vty uses port 260", bgp, q)  # "260" may still become 2605
    assert not doomed("The BGPd vty uses port 2605 and", bgp, q)
    assert not doomed('The "BGP 2604', bgp, q)  # inside an open quote nothing is decided
    assert not doomed("The TCP port is", bgp, q)  # TCP: from the question
    # What it gives up on would have failed whole, however the sentence went on.
    for ending in (" then.", " 2605.", " or 2605/tcp."):
        assert not attributable("The BGPd vty uses port 2604 and" + ending, bgp, q)


def test_writing_stops_at_a_hopeless_sentence_and_shows_the_same():
    from outpost.runtime.ask.attribute import doomed

    bgp = "bgpd 2605/tcp # BGPd vty"
    pieces = ["The", " BGPd", " uses", " 2605.", " Not", " 2604", " or", " more", " words."]

    def checked(text):
        return check(text, [bgp])

    eager, patient = [], []
    early = Shown(eager.append, checked, lambda prefix: doomed(prefix, bgp))
    late = Shown(patient.append, checked)
    used = next((i for i, p in enumerate(pieces) if not early.add(p)), len(pieces))
    for p in pieces:
        if not late.add(p):
            break
    late.finish()
    assert eager == patient == ["The BGPd uses 2605. "]
    assert used == 6 and early.failed == "Not 2604 or"  # stopped at " or", 3 pieces sooner


def test_line_features_prefer_lines_that_answer_over_lines_that_restate():
    import numpy as np

    from outpost.runtime.ask.rank import FEATURES, line_features

    reading, hits = _reading(
        ["Battery Charging Station CS-48\nA full charge from 20 % takes about 8 hours."], {}
    )
    q = "How long does a full battery charge take at the CS-48 station?"
    rows = line_features(q, reading.units, hits, np.zeros(len(reading.units)), {})
    title, answer = rows
    col = {f: i for i, f in enumerate(FEATURES)}
    assert answer[col["answer_type"]] == 1 and title[col["answer_type"]] == 0
    assert title[col["restates"]] == 1 and answer[col["restates"]] == 0


@pytest.mark.slow
def test_ask_json_says_how_the_answer_was_made(smol_bundle):
    done = outpost("ask", str(smol_bundle), "What does alarm E-305 on the PX-200 mean?", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["answer_mode"] in ("generated", "quoted") and not answer["refused"]
    assert "E-305" in answer["evidence"][0]["text"] or "8 s" in answer["evidence"][0]["text"]
    assert 0 < answer["timings"]["first_shown_s"] <= answer["timings"]["retrieval_s"] + 5
    if answer["answer_mode"] == "quoted":
        assert answer["answer"] == answer["evidence"][0]["text"]
    off = json.loads(
        outpost("ask", str(smol_bundle), "Who painted the Mona Lisa?", "--json").stdout
    )
    assert off["refused"] and off["answer_mode"] is None and off["evidence"] == []


def test_a_line_from_a_better_retrieved_chunk_wins_a_tie():
    import numpy as np

    from outpost.runtime.ask.rank import FEATURES, LINE_WEIGHTS, line_features

    same = "Replace the filter every 500 hours."
    reading, hits = _reading([same, same], {})
    q = "How often must the filter be replaced?"
    rows = line_features(q, reading.units, hits, np.full(len(reading.units), 0.5), {"filter": 1.0})
    col = {f: i for i, f in enumerate(FEATURES)}
    assert rows[0][col["chunk_rank"]] > rows[1][col["chunk_rank"]]
    weights = np.array([LINE_WEIGHTS[f] for f in FEATURES])
    assert rows[0] @ weights > rows[1] @ weights


def test_a_question_is_analysed_once_for_every_stage():
    history = [
        {"role": "user", "content": "What is the site emergency number?"},
        {"role": "assistant", "content": "Call 112."},
    ]
    follow_up = analyse("And who must be told?", history)
    assert follow_up.query == "What is the site emergency number? And who must be told?"
    assert follow_up.asked.text == "And who must be told?"  # quotes and attribution read this
    assert follow_up.ranked.text == follow_up.query  # it names too little to rank lines alone
    assert follow_up.keywords == tuple(keyword_terms(follow_up.query))
    own = analyse("How many bar does the PX-200 pump reach?", history)
    assert own.ranked is own.asked and "number" in own.asked.kinds
    assert own.names == (("PX-200",),)
    norwegian = analyse("Hvor ofte må filteret skiftes?", language="nb")
    assert norwegian.lex is lexicon("nb") and "filter" in norwegian.asked.terms
    # A plain string is what the stages took before: English, no history, every chunk.
    assert as_question("Which port does bgpd use?") == analyse("Which port does bgpd use?")


@pytest.mark.slow
def test_an_off_topic_question_is_declined_before_any_line_is_ranked(smol_bundle, monkeypatch):
    from outpost.runtime.ask import assistant as walk

    def ranked(*args, **kwargs):
        raise AssertionError("lines were ranked for a question declined by the threshold")

    monkeypatch.setattr(walk, "rank", ranked)
    a = walk.open_assistant(smol_bundle, walk.AskConfig(threads=1))
    try:
        answer = a.ask("Who is the best tennis player of all time?")
    finally:
        a.bundle.close()
    assert answer.declined_by == "threshold" and not answer.grounded and answer.evidence == []
    assert answer.evidence_score is not None  # the words were gauged: the row still reports it
