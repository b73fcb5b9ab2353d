"""Languages: detection with fallbacks, stemming and stopwords per language, compounds, the
texts a user reads; and a mixed Norwegian + English bundle answering each question from the
manual in its language, declining in the question's language."""

import json

import pytest

from conftest import export, outpost
from outpost.export.documents.chunk import Chunk
from outpost.export.documents.languages import chunk_languages, declared
from outpost.runtime.ask.names import unknown_names
from outpost.runtime.ask.retrieve import keyword_terms
from outpost.runtime.ask.terms import coverage, question_terms, terms
from outpost.runtime.bundle.store import ChunkStore, write_store
from outpost.runtime.language.compounds import split_compound
from outpost.runtime.language.detect import ChunkLanguages, detect, question_language
from outpost.runtime.language.kinds import wants
from outpost.runtime.language.lexicon import lexicon
from outpost.runtime.language.texts import say


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


def test_a_chunk_that_goes_on_in_english_is_also_found_in_norwegian():
    # A partial translation: the chunk opens in Norwegian and goes on in English.
    nb = (
        "En ruter tilkoplet Internett på det eksterne grensesnittet, og som kjører på "
        "IP-adressen 10.0.0.1 på det interne grensesnittet, er nødvendig for å få tilgang til "
        "Internett."
    )
    en = (
        "See the installation documentation for a simple way to set up the router. If you "
        "need something for an embedded router, we recommend a dedicated distribution."
    )
    mixed = f"{nb} {en}"
    chunks = [Chunk("m.html", "", t, 0, len(t)) for t in (nb, mixed, en, en)]
    found = chunk_languages(chunks, [{"path": "m.html"}], None, lambda m: None)
    assert found["runs"] == [[0, 1, "nb"], [1, 3, "en"]]
    assert found["also"] == {"nb": [[1, 1]]}
    languages = ChunkLanguages("en", (0, 1), ("nb", "en"), {"nb": ((1,), (2,))})
    assert [languages.holds(i, "nb") for i in range(4)] == [True, True, False, False]
    assert [languages.holds(i, "en") for i in range(4)] == [False, True, True, True]


@pytest.mark.parametrize(
    ("question", "language", "kinds"),
    [
        ("Hvor mye RAM må en arbeidsstasjon ha?", "nb", {"number"}),
        ("Hvilken kommando oppdaterer DNS?", "nb", {"name"}),
        ("Hvor finner jeg grafene til Munin?", "nb", {"place"}),
        ("Waarom kan ik beter geen grote partities maken?", "nl", {"reason"}),
        ("Hoeveel schijfruimte is nodig?", "nl", {"number"}),
        ("Where is the log file written?", "en", {"place"}),
        ("Which file holds the settings?", "en", {"name"}),
        ("Hvem kan tilbakestille lysgardinen?", "nb", set()),
    ],
)
def test_what_a_question_asks_for_is_read_in_its_language(question, language, kinds):
    assert wants(question, lexicon(language)) == kinds


def test_a_compound_the_manual_lacks_is_split_into_parts_it_holds():
    counts = {"thuis": 4, "mappen": 7, "map": 9, "killer": 2, "skriptet": 3, "thuismappen": 0}

    def known(word):
        return sum(n for w, n in counts.items() if w.startswith(word))

    assert split_compound("thuismappen", known, "nl") == ["thuis", "mappen"]
    assert split_compound("killer-skriptet", known, "nb") == ["killer", "skriptet"]
    assert split_compound("killer", known, "nb") == []  # known whole
    assert split_compound("thuismappen", known, "en") == []  # English does not compound
    assert split_compound("zzzzqqqq", known, "nl") == []  # no known parts


@pytest.fixture
def manual_store(tmp_path):
    texts = [
        "Gebruik ',' als scheidingsteken tussen velden in het CSV-bestand.",
        "Kopieer de thuis-map en de mappen van de leraren naar de reservekopie.",
        "The modem appears as /dev/ttyUSB0; CSV-fil with Google as start page and the drive.",
        "Press the Reset key on the KT-9 panel, then check the DKU-2 cable.",
        "The GS2 drive talks Modbus; the Mesa card is connected over Ethernet.",
    ]
    path = tmp_path / "chunks.sqlite"
    write_store([("m.md", "", 0, len(t), t) for t in texts], path)
    return ChunkStore(path)


def test_question_terms_take_an_unknown_compound_as_its_parts(manual_store):
    nl = lexicon("nl")
    found = question_terms("Hoe maak ik een reservekopie van de thuismappen?", manual_store, nl)
    assert {"thuis", nl.stem("mappen"), nl.stem("reservekopie")} <= found
    assert "thuismapp" not in found and nl.stem("thuismappen") not in found


@pytest.mark.parametrize(
    ("question", "language", "unknown"),
    [
        ("Which version of Moodle ships with the server?", "en", ["Moodle"]),
        ("How do I connect the KT-9 to the plant Wi-Fi network?", "en", ["Wi-Fi"]),
        ("How do I link it to Microsoft Active Directory?", "en", ["Microsoft Active Directory"]),
        ("Hvordan setter jeg opp AirPrint for iPad-er?", "nb", ["AirPrint", "iPad-er"]),
        ("How do I press Reset on the KT-9 with a DKU-2 cable?", "en", []),
        ("My modem is /dev/ttyUSB2 today; which ACL do I need?", "en", []),  # paths, acronyms
        ("Kopieer ik de mappen met Google Drive?", "nl", []),  # both words are the manual's
        ("Wie setze ich den Zähler am Bedienfeld zurück?", "de", []),  # German nouns
        ("Where is CSV-fila kept?", "en", []),  # a capitalised part is known
        # A sentence's first word is capitalised for the sentence, not because it is a name.
        ("Jeg har en KT-9. Hvilken kabel trenger jeg?", "nb", []),
        ("I have a KT-9 here. Which cable? Thanks.", "en", []),
        ("I have a KT-9. Does it speak to Moodle?", "en", ["Moodle"]),
        # A name of several words is known by its distinctive part (a model number, a product)
        ("How do I wire the AutomationDirect GS2 drive?", "en", []),
        ("Can the Huawei E3372 stick be used?", "en", ["Huawei E3372"]),
        ("Where does the Ethernet-connected Mesa card go?", "en", []),
        # The user's own host names and the plurals of short acronyms are not products
        ("Mail leaves as user@ws12.sales.example.com; which KT-9 setting?", "en", []),
        ("The PCs in our lab run Windows. Which KT-9 cable?", "en", ["Windows"]),
        ("Does Node.js 18.2 run on the KT-9?", "en", ["Node.js"]),
    ],
)
def test_a_name_the_manuals_never_hold_is_unknown(manual_store, question, language, unknown):
    assert unknown_names(question, manual_store, lexicon(language)) == unknown


@pytest.mark.parametrize(
    ("card", "languages"),
    [
        ("---\nlanguage: en\nlicense: apache-2.0\n---\n# MiniLM", ["en"]),
        ("---\nlanguage:\n- nl\n- en\n- ja\n---\n", ["en", "nl"]),
        ("---\nlanguage:\n- multilingual\n- en\n---\n", None),
        ("---\nlicense: mit\n---\n", None),
        ("# no front matter", None),
        ("---\nlanguage: [unclosed\n---\n", None),
    ],
)
def test_the_embedders_languages_come_from_its_model_card(tmp_path, card, languages):
    from outpost.export.retrieval.embedder import card_languages

    (tmp_path / "README.md").write_text(card)
    assert card_languages(str(tmp_path)) == languages
    assert card_languages(str(tmp_path / "missing")) is None


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
    info = outpost("info", str(out)).stdout
    assert "reads en)" in info and "languages  chunks in en 1, nb 1; main " in info
    shown = outpost("ask", str(out), "Hvem kan tilbakestille lysgardinen?", "--max-new-tokens", "8")
    assert "Kilder:" in shown.stdout or "Fra håndboken" in shown.stdout
