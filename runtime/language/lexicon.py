"""What reading words needs in a language: the Snowball stemmer (snowballstemmer, pure Python),
the short words of stopwords-iso's list, and a few question words ("how often", "hvor ofte",
"hoe vaak") that say what kind of answer is wanted, not what it is about. English keeps
Outpost's own short stopword list and suffix stemmer, which the line ranker's weights were
fitted with (docs/quality.md).
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from typing import Any

from outpost.runtime.language.detect import MAIN, SNOWBALL

SHORT_STOPWORD = 3  # letters: stopwords-iso words this short are function words


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


def fold(text: str) -> str:
    """Lower case; diacritics kept where the language needs them (å, ø, æ, ä, ö, ü are letters
    of their own), other combining marks composed."""
    return unicodedata.normalize("NFC", text).lower()
