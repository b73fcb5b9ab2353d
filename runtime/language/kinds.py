"""What kind of answer a question asks for, by its opening, per language: a number (how long, how
many), a name (which command, option, file), a place (where) or a reason (why); and whether a
line gives a reason. English's openings are always read too: manuals and questions in other
languages quote English.
"""

from __future__ import annotations

import functools
import re

from outpost.runtime.language.lexicon import Lexicon

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
