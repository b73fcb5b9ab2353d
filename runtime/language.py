"""Which language a text is in, and what reading words needs in that language.

- Detection: py3langid (a maintained port of langid.py; a small naive-Bayes model over byte
  n-grams, numpy only). Whole documents are detected reliably. A question is short, so it is
  classified only among the bundle's own languages, and it falls back to the bundle's main
  language when even that is unsure.
- Words: per language, the Snowball stemmer (snowballstemmer, pure Python), the short words of
  stopwords-iso's list, and a few question words ("how often", "hvor ofte", "hoe vaak") that say
  what kind of answer is wanted, not what it is about. English keeps Outpost's own short
  stopword list and suffix stemmer, which the line ranker's weights were fitted with
  (docs/quality.md).
- Compounds: Norwegian, Danish, Swedish, Dutch, German and Finnish write compounds as one word
  ("oljefilteret", "oliefilter"). Evidence coverage finds a stem inside a longer word
  (runtime/ask/evidence.py), so "filteret" in a question meets "oljefilteret" in a manual.
"""

from __future__ import annotations

import bisect
import functools
import math
import re
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from outpost.runtime.bundle.manifest import Manifest

MAIN = "en"
# Language codes Outpost reads (ISO 639-1; Norwegian Bokmål as "nb") -> Snowball's name.
SNOWBALL = {
    "en": "english",
    "nb": "norwegian",
    "nl": "dutch",
    "de": "german",
    "fr": "french",
    "es": "spanish",
    "sv": "swedish",
    "da": "danish",
    "fi": "finnish",
    "it": "italian",
    "pt": "portuguese",
}
LANGUAGES = tuple(SNOWBALL)
_ALIASES = {"no": "nb", "nn": "nb", "nob": "nb", "nno": "nb", "nor": "nb"}  # py3langid, HTML
MIN_SHARE = 0.7  # a question's detection must be at least this sure, else the main language
SHORT_STOPWORD = 3  # letters: stopwords-iso words this short are function words
MIN_CHUNKS_SHARE = 0.05  # a language with fewer of the bundle's chunks is not asked in

# Words that say what kind of answer is wanted, not what it is about (lower-case).
QUESTION_WORDS = {
    "en": "often much many long mean means meaning explain tell describe happen happens need needs "
    "must should would could way ways kind type use used using get set make there",
    "nb": "hvor ofte mye mange lenge betyr bety forklar fortell beskriv skjer må skal bør kan "
    "kunne hvordan hva hvilken hvilket hvilke hvem hvorfor når gjøre bruke brukes får finnes "
    "finner",
    "nl": "hoe vaak veel lang betekent betekenis leg uit vertel beschrijf gebeurt moet moeten "
    "zou kan kunnen wat welk welke wie waarom wanneer waar doen gebruiken gebruikt krijg bestaat "
    "hoeveel vind",
    "de": "wie oft viel viele lange bedeutet erkläre beschreibe passiert muss soll kann welche "
    "wer warum wann wo machen benutzen",
    "fr": "comment souvent combien longtemps signifie explique décris arrive dois faut peut "
    "quel quelle quels qui pourquoi quand où faire utiliser",
    "es": "cómo como frecuencia cuánto cuántos significa explica describe pasa debo debe puede "
    "cuál cuáles quién por qué cuándo dónde hacer usar",
}
# What a question asks for, by its opening: a number (how long, how many, which port, what
# default) or a name (which command, option, file, variable). English's are always read too:
# manuals and questions in other languages quote English.
_NUMBER_ASKED = {
    "en": r"\b(how (long|many|much|often|far|big|large|high|low|fast|old)|what (is|are) the "
    r"(default|maximum|minimum|limit|size|number|port|value|interval|timeout|range|length|speed|"
    r"temperature|pressure|voltage))|which port|what port|how soon\b|"
    r"\b(at )?what (pressure|temperature|voltage|speed|rate|size|level|version|depth)\b",
    "nb": r"\bhvor (mye|mange|lenge|ofte|langt?|stor|store|høy|lav|raskt?|gammel)\b|"
    r"\bhvilke[nt]? port|\bhva er (standard|maks|minste|største|grensen|størrelsen|antallet|"
    r"porten|verdien|intervallet)",
    "nl": r"\bhoe (lang|vaak|veel|groot|hoog|laag|snel|oud|ver)\b|\bhoeveel\b|\bwelke poort|"
    r"\bwat is de (standaard|maximale|minimale|limiet|grootte|poort|waarde)",
    "de": r"\bwie (lange?|oft|viel|viele|groß|hoch|schnell|alt|weit)\b|\bwieviele?\b|"
    r"\bwelche[rnms]? port",
    "fr": r"\bcombien\b|\bquel(le)? (taille|durée|fréquence|valeur|limite|port)\b",
    "es": r"\bcuánt[oa]s?\b|\bqué (tamaño|puerto|valor|límite)\b",
}
_NAME_ASKED = {
    "en": r"\b(which|what) (command|option|setting|parameter|variable|file|program|daemon|package|"
    r"key(word)?|directive|flag|tool|module|backend|driver|function|field|group|filesystem|"
    r"address|chip|target|user|service|unit|device|interface|protocol|format|mode|directory|"
    r"folder|path|library|plugin|header|section|pragma|macro|warning|error)s?\b|\bcalled\b",
    "nb": r"\bhvilke[nt]? (kommando|valg|innstilling|parameter|variabel|fil|program|pakke|nøkkel|"
    r"felt|verktøy|modul|driver|funksjon|tjeneste)|\bhva heter\b",
    "nl": r"\bwelke? (commando|optie|instelling|parameter|variabele|bestand|programma|pakket|"
    r"sleutel|veld|hulpmiddel|module|stuurprogramma|functie|dienst)|\bhoe heet\b",
    "de": r"\bwelche[rnms]? (befehl|option|einstellung|parameter|variable|datei|programm|paket|"
    r"schlüssel|feld|werkzeug|modul|treiber|funktion|dienst)|\bwie heißt\b",
    "fr": r"\bquel(le)?s? (commande|option|paramètre|variable|fichier|programme|paquet|clé|champ|"
    r"outil|module|pilote|fonction|service)|\bcomment s'appelle\b",
    "es": r"\bqué (comando|orden|opción|parámetro|variable|archivo|fichero|programa|paquete|clave|"
    r"campo|herramienta|módulo|controlador|función|servicio)|\bcómo se llama\b",
}


# A where-question is answered by a place (a path, an address, a menu); a why-question by a
# reason, which its line gives with a connective ("because", "fordi", "omdat").
_PLACE_ASKED = {
    "en": r"\bwhere (is|are|can|do|does|should|will)\b",
    "nb": r"\bhvor (finner|ligger|er|kan|skal|lagres|står)\b",
    "nl": r"\bwaar (vind|staat|staan|is|zijn|kan|moet|wordt|worden)\b",
    "de": r"\bwo (finde|ist|sind|kann|liegt|liegen|steht|wird)\b",
    "fr": r"\boù (est|sont|trouve|se trouve|puis)\b",
    "es": r"\bdónde (está|están|encuentro|se encuentra|puedo)\b",
}
_REASON_ASKED = {
    "en": r"\bwhy\b",
    "nb": r"\bhvorfor\b",
    "nl": r"\bwaarom\b",
    "de": r"\b(warum|wieso|weshalb)\b",
    "fr": r"\bpourquoi\b",
    "es": r"\bpor qué\b",
}
_REASON_GIVEN = {
    "en": r"\b(because|since|due to|so that|otherwise|as a result|in order to)\b",
    "nb": r"\b(fordi|siden|ettersom|på grunn av|ellers|slik at|for å unngå)\b",
    "nl": r"\b(omdat|omwille|doordat|vanwege|anders|zodat|want)\b",
    "de": r"\b(weil|denn|sonst|damit|wegen|aufgrund)\b",
    "fr": r"\b(parce que|car|puisque|sinon|afin de|à cause de)\b",
    "es": r"\b(porque|ya que|debido a|de lo contrario|para que)\b",
}
_TABLES = {
    "number": _NUMBER_ASKED,
    "name": _NAME_ASKED,
    "place": _PLACE_ASKED,
    "reason": _REASON_ASKED,
    "reason_given": _REASON_GIVEN,
}


@functools.cache
def _pattern(table: str, language: str) -> re.Pattern:
    """The table's pattern for `language`, with English's (manuals and questions in other
    languages quote English)."""
    patterns = _TABLES[table]
    either = [patterns["en"], *([patterns[language]] if language in patterns else [])]
    return re.compile("|".join(f"(?:{p})" for p in dict.fromkeys(either)), re.I)


def wants(question: str, lex: Lexicon) -> frozenset[str]:
    """What kind of answer the question asks for: "number", "name", "place", "reason"."""
    return frozenset(
        kind
        for kind in ("number", "name", "place", "reason")
        if _pattern(kind, lex.language).search(question)
    )


def gives_reason(text: str, lex: Lexicon) -> bool:
    """Whether a line gives a reason (has a connective such as "because", "fordi")."""
    return bool(_pattern("reason_given", lex.language).search(text))


ENGLISH_STOPWORDS = frozenset(
    "a an and are as at be by can do does for from how i if in is it of on or should "
    "that the this to was what when where which who why will with you your my me we "
    "there their then than into about after before any all also has have had not no".split()
)
_ENGLISH_SUFFIXES = (
    "ations",
    "ation",
    "ings",
    "ing",
    "ers",
    "ies",
    "ied",
    "ed",
    "es",
    "er",
    "ly",
    "s",
)


def code(tag: str | None) -> str | None:
    """An ISO code Outpost reads, from an HTML/DOCX tag or a detector's label ("nb-NO",
    "no", "nl_BE" -> "nb", "nb", "nl"); None when it reads no such language."""
    if not tag:
        return None
    base = re.split(r"[-_]", tag.strip().lower())[0]
    base = _ALIASES.get(base, base)
    return base if base in SNOWBALL else None


@functools.cache
def _identifier(labels: tuple[str, ...]) -> Any:
    """py3langid's classifier restricted to `labels`, one per set (restricting is slow)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(list(labels))
    return identifier


_LOCK = threading.Lock()


def detect(text: str, among: tuple[str, ...] = LANGUAGES) -> tuple[str, float]:
    """(language, probability) of `text`, classified among `among` only."""
    labels = tuple(
        sorted({"no" if c == "nb" else c for c in among} | ({"nn"} if "nb" in among else set()))
    )
    with _LOCK:  # the first call for a set of languages builds its classifier
        identifier = _identifier(labels)
    label, p = identifier.classify(text[:20000])
    return code(label) or MAIN, float(p)


def question_language(question: str, languages: tuple[str, ...], main: str) -> str:
    """The question's language among the bundle's; the main language when unsure or when the
    bundle has only one."""
    if len(languages) < 2:
        return main
    found, p = detect(question, languages)
    return found if p >= MIN_SHARE else main


@dataclass(frozen=True)
class Lexicon:
    language: str
    stopwords: frozenset
    question_words: frozenset

    def stem(self, word: str) -> str:
        return _stem(self.language, word)


@functools.cache
def lexicon(language: str) -> Lexicon:
    """The words to leave out and the stemmer for `language`. Other languages leave out
    English's stopwords too (their manuals quote English: commands, untranslated paragraphs)
    and only the short words of stopwords-iso's list: its long words include content words
    ("beneden", "bepaald"), and leaving them out cost the Dutch set 3 of 20 right lines
    (docs/quality.md, "Languages")."""
    language = language if language in SNOWBALL else MAIN
    english = frozenset(fold(w) for w in QUESTION_WORDS[MAIN].split())
    if language == "en":
        return Lexicon(language, ENGLISH_STOPWORDS, english)
    import stopwordsiso

    iso = stopwordsiso.stopwords("no" if language == "nb" else language)
    short = frozenset(fold(w) for w in iso if len(w) <= SHORT_STOPWORD)
    asked = frozenset(fold(w) for w in QUESTION_WORDS.get(language, "").split())
    return Lexicon(language, ENGLISH_STOPWORDS | short, english | asked)


@functools.lru_cache(maxsize=65536)
def _stem(language: str, word: str) -> str:
    if not word.isalpha():
        return word
    if language == "en":
        for suffix in _ENGLISH_SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= 4:
                return word[: -len(suffix)]
        return word
    stemmed = _stemmer(language).stemWord(word)
    return stemmed if len(stemmed) >= 3 else word


@functools.cache
def _stemmer(language: str) -> Any:
    import snowballstemmer

    return snowballstemmer.stemmer(SNOWBALL[language])


# Languages that write compounds as one word ("oljefilteret", "gebruikersgegevens").
COMPOUNDING = frozenset({"nb", "nl", "de", "sv", "da", "fi"})
PART = 4  # letters: the shortest part a compound is split into


def split_compound(word: str, known: Callable[[str], int], language: str) -> list[str]:
    """The parts of a compound the manuals do not hold whole, each a word they do hold
    ("thuismappen" -> ["thuis", "mappen"], "killer-skriptet" -> ["killer", "skriptet"]); []
    for a known word, a word that is not a compound, or a language that does not compound.
    `known(w)` counts the chunks holding a word that starts with `w`. Of the two-part splits,
    the one with the highest geometric mean count wins (Koehn & Knight, 2003); a right part
    that is not known is split once more. Splitting compounds the manuals do hold cost the
    Dutch set a right line (docs/quality.md, "Languages")."""
    if language not in COMPOUNDING or known(word):
        return []
    if "-" in word:
        parts = [p for p in word.split("-") if p]
        return parts if len(parts) > 1 and all(p.isalpha() and known(p) for p in parts) else []
    if not word.isalpha() or len(word) < 2 * PART:
        return []
    best: tuple[float, list[str]] = (0.0, [])
    for i in range(PART, len(word) - PART + 1):
        left, right = word[:i], word[i:]
        if not known(left):
            continue
        rest = [right] if known(right) else split_compound(right, known, language)
        if rest:
            parts = [left, *rest]
            score = math.prod(known(p) for p in parts) ** (1 / len(parts))
            best = max(best, (score, parts), key=lambda b: b[0])
    return best[1]


def fold(text: str) -> str:
    """Lower case; diacritics kept where the language needs them (å, ø, æ, ä, ö, ü are letters
    of their own), other combining marks composed."""
    return unicodedata.normalize("NFC", text).lower()


NAMES = {
    "en": "English",
    "nb": "Norwegian (Bokmål)",
    "nl": "Dutch",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "sv": "Swedish",
    "da": "Danish",
    "fi": "Finnish",
    "it": "Italian",
    "pt": "Portuguese",
}

# What a user reads, per language: the decline, the withheld answer, the CLI's labels.
_SAY = {
    "en": {
        "never_named": "They never mention {names}.",
        "declined": "The documents do not cover this question.",
        "withheld": "The manuals' passages do not confirm the answer the model wrote, so it is "
        "not shown; read the quoted passage instead.",
        "quoted": "From the manual",
        "evidence": "Evidence",
        "sources": "Sources",
    },
    "nb": {
        "never_named": "De nevner aldri {names}.",
        "declined": "Håndbøkene dekker ikke dette spørsmålet.",
        "withheld": "Avsnittene i håndbøkene bekrefter ikke svaret modellen skrev, så det vises "
        "ikke; les det siterte avsnittet i stedet.",
        "quoted": "Fra håndboken",
        "evidence": "Belegg",
        "sources": "Kilder",
    },
    "nl": {
        "never_named": "Ze noemen {names} nergens.",
        "declined": "De handleidingen behandelen deze vraag niet.",
        "withheld": "De passages uit de handleidingen bevestigen het antwoord van het model niet, "
        "dus het wordt niet getoond; lees de geciteerde passage.",
        "quoted": "Uit de handleiding",
        "evidence": "Bewijs",
        "sources": "Bronnen",
    },
    "de": {
        "never_named": "Sie erwähnen {names} nirgends.",
        "declined": "Die Handbücher behandeln diese Frage nicht.",
        "withheld": "Die Abschnitte der Handbücher bestätigen die Antwort des Modells nicht; sie "
        "wird nicht gezeigt. Lesen Sie den zitierten Abschnitt.",
        "quoted": "Aus dem Handbuch",
        "evidence": "Beleg",
        "sources": "Quellen",
    },
    "fr": {
        "never_named": "Ils ne mentionnent jamais {names}.",
        "declined": "Les manuels ne traitent pas cette question.",
        "withheld": "Les passages des manuels ne confirment pas la réponse du modèle ; elle n'est "
        "pas affichée. Lisez le passage cité.",
        "quoted": "Extrait du manuel",
        "evidence": "Justification",
        "sources": "Sources",
    },
    "es": {
        "never_named": "Nunca mencionan {names}.",
        "declined": "Los manuales no tratan esta pregunta.",
        "withheld": "Los pasajes de los manuales no confirman la respuesta del modelo; no se "
        "muestra. Lea el pasaje citado.",
        "quoted": "Del manual",
        "evidence": "Evidencia",
        "sources": "Fuentes",
    },
}


def say(language: str, what: str) -> str:
    """A user-facing text in `language` (English where it has none)."""
    return _SAY.get(language, _SAY[MAIN]).get(what) or _SAY[MAIN][what]


@dataclass(frozen=True)
class ChunkLanguages:
    """Each chunk's language (runs of chunk ids) and the chunks that hold a second one."""

    main: str
    starts: tuple[int, ...] = ()
    languages: tuple[str, ...] = ()
    also: dict = field(default_factory=dict)  # language -> (run starts, run ends)

    def of(self, chunk_id: int) -> str:
        at = bisect.bisect_right(self.starts, chunk_id) - 1
        return self.languages[at] if at >= 0 else self.main

    def holds(self, chunk_id: int, language: str) -> bool:
        """Whether the chunk is in `language`, or holds a share of it (a partial translation)."""
        if self.of(chunk_id) == language:
            return True
        starts, ends = self.also.get(language, ((), ()))
        at = bisect.bisect_right(starts, chunk_id) - 1
        return at >= 0 and chunk_id < ends[at]


def bundle_languages(manifest: Manifest) -> tuple[str, tuple[str, ...], ChunkLanguages]:
    """(main language, the languages a question may be in, each chunk's languages) from the
    manifest's `languages` (bundles from before it: English throughout)."""
    info = manifest.languages or {}
    main = code(info.get("main")) or MAIN
    counts = {c: int(v) for k, v in (info.get("chunks") or {}).items() if (c := code(k))}
    total = sum(counts.values()) or 1
    present = sorted(k for k, n in counts.items() if n >= max(1, MIN_CHUNKS_SHARE * total))
    runs = info.get("runs") or []
    also = {
        c: (tuple(int(r[0]) for r in v), tuple(int(r[0]) + int(r[1]) for r in v))
        for k, v in (info.get("also") or {}).items()
        if (c := code(k))
    }
    chunks = ChunkLanguages(
        main,
        tuple(int(r[0]) for r in runs),
        tuple(code(str(r[2])) or main for r in runs),
        also,
    )
    return main, tuple(present) or (main,), chunks
