"""Languages: detection with fallbacks, stemming and stopwords per language, compounds, the
texts a user reads; and a mixed Norwegian + English bundle answering each question from the
manual in its language, declining in the question's language."""

import json

import pytest

from conftest import export, outpost
from outpost.export.chunk import Chunk
from outpost.export.languages import chunk_languages, declared
from outpost.runtime.evidence import coverage, terms
from outpost.runtime.language import detect, lexicon, question_language, say
from outpost.runtime.retrieve import keyword_terms


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Hvor ofte må filteret skiftes?", "nb"),
        ("Hvordan legger jeg til en ny bruker?", "nb"),
        ("Hoe vaak moet het oliefilter worden vervangen?", "nl"),
        ("How often must the filter be replaced?", "en"),
    ],
)
def test_a_question_is_classified_among_the_bundles_languages(question, expected):
    assert question_language(question, ("en", "nb", "nl"), "en") == expected


def test_short_or_single_language_questions_fall_back_to_the_main_language():
    # Danish is closer than Norwegian for this short question among all languages...
    assert detect("Hvor ofte må filteret skiftes?")[0] != "nb"
    # ...so a bundle's languages decide, and a one-language bundle needs no detection
    assert question_language("Hvor ofte må filteret skiftes?", ("en", "nb"), "en") == "nb"
    assert question_language("What is GOsa?", ("nb",), "nb") == "nb"
    assert question_language("ok", ("en", "nl"), "nl") == "nl"  # unsure: the main language


def test_stemming_and_stopwords_follow_the_language():
    nb, nl, en = lexicon("nb"), lexicon("nl"), lexicon("en")
    assert nb.stem("filteret").startswith(nb.stem("filter"))  # one prefix finds both forms
    assert nl.stem("vervangen") == nl.stem("vervang")
    assert "og" in nb.stopwords and "het" in nl.stopwords and "the" in en.stopwords
    assert terms("Hvor ofte må filteret skiftes?", nb) == {nb.stem("filteret"), nb.stem("skiftes")}
    assert terms("How often must the filter be replaced?") == {"filt", "replac"}


def test_keyword_search_leaves_out_the_languages_function_and_question_words():
    assert keyword_terms("Hvor ofte må oljefilteret skiftes?", lexicon("nb")) == [
        "oljefilteret",
        "skiftes",
    ]
    assert keyword_terms("Hoe vaak moet het oliefilter worden vervangen?", lexicon("nl")) == [
        "oliefilter",
        "worden",
        "vervangen",
    ]
    assert keyword_terms("How often must the E-305 filter be replaced?") == [
        "often",
        "must",
        "e-305",
        "filter",
        "replaced",
    ]


def test_a_compounds_part_is_found_inside_the_compound():
    nb = lexicon("nb")
    weights = {t: 1.0 for t in terms("Hvor ofte må filteret skiftes?", nb)}
    assert coverage(weights, "Skift oljefilteret hver uke.", nb) == 1.0
    assert coverage(weights, "Sjekk dekktrykket hver uke.", nb) == 0.0


def test_users_read_the_decline_in_their_language():
    assert say("nb", "declined") == "Håndbøkene dekker ikke dette spørsmålet."
    assert say("nl", "sources") == "Bronnen"
    assert say("xx", "declined") == say("en", "declined")


def test_chunk_languages_runs_declared_and_forced(tmp_path):
    page = tmp_path / "a.html"
    page.write_text('<!DOCTYPE html><html lang="nb-NO"><body>x</body></html>')
    assert declared(page) == "nb" and declared(tmp_path / "b.md") is None
    nb = "Filteret må skiftes hver uke, og oljen må sjekkes før maskinen startes om morgenen."
    en = "The filter must be replaced every week, and the oil checked before the machine starts."
    chunks = [Chunk("a.html", "", t, 0, len(t)) for t in (nb, nb, "Kort.", en)]
    chunks.append(Chunk("b.md", "", en, 0, len(en)))
    docs = [{"path": "a.html", "declared": "nb"}, {"path": "b.md", "declared": None}]
    found = chunk_languages(chunks, docs, None, lambda m: None)
    assert found["runs"] == [[0, 3, "nb"], [3, 2, "en"]] and found["main"] == "nb"
    assert [d["language"] for d in docs] == ["nb", "en"] and "declared" not in docs[0]
    forced = chunk_languages(chunks, [{"path": "a.html"}, {"path": "b.md"}], "nl", print)
    assert forced["runs"] == [[0, 5, "nl"]] and forced["forced"] is True


NB_MANUAL = """# Vedlikehold av pressen

Hydraulikkfilteret må skiftes hver 500. driftstime. Bruk bare originalfilter med delenummer HF-220.

Oljenivået kontrolleres hver morgen før pressen startes.

# Sikkerhet

Lysgardinen kan bare tilbakestilles av en skiftleder med nøkkelbryteren på panelet.
"""
EN_MANUAL = """# Press maintenance

The hydraulic filter must be replaced every 500 operating hours. Use only original filter part
number HF-220.

Check the oil level every morning before the press is started.

# Safety

Only a shift supervisor may reset the light curtain, with the key switch on the panel.
"""


@pytest.mark.slow
def test_a_mixed_bundle_answers_each_question_from_the_manual_in_its_language(tiny_phi3, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "presse.md").write_text(NB_MANUAL)
    (docs / "press.md").write_text(EN_MANUAL)
    out = tmp_path / "bundle"
    done = export(docs, out, "--base", str(tiny_phi3), "--precision", "fp32", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads(done.stdout)
    assert set(manifest["languages"]["chunks"]) == {"nb", "en"}
    by_doc = {d["path"]: d["language"] for d in manifest["sources"]["documents"]}
    assert by_doc == {"presse.md": "nb", "press.md": "en"}

    def ask(question):
        done = outpost("ask", str(out), question, "--json", "--max-new-tokens", "8")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    nb = ask("Hvem kan tilbakestille lysgardinen?")
    assert nb["language"] == "nb" and {c["source"] for c in nb["citations"]} == {"presse.md"}
    en = ask("Who may reset the light curtain?")
    assert en["language"] == "en" and {c["source"] for c in en["citations"]} == {"press.md"}
    declined = ask("Hvordan kobler jeg pressen til skytjenesten via Bluetooth?")
    assert declined["declined"] and declined["declined_by"] == "name"
    assert declined["answer"] == say("nb", "declined") + " De nevner aldri Bluetooth."
    assert declined["unknown_names"] == ["Bluetooth"]
    shown = outpost("ask", str(out), "Hvem kan tilbakestille lysgardinen?", "--max-new-tokens", "8")
    assert "Kilder:" in shown.stdout or "Fra håndboken" in shown.stdout
