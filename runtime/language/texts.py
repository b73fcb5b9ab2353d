"""What a user reads, per language: the language names, the decline, the withheld answer and the
CLI's labels (`say`).
"""

from __future__ import annotations

from outpost.runtime.language.detect import MAIN

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
        "sources": "Sources",
    },
    "nb": {
        "never_named": "De nevner aldri {names}.",
        "declined": "Håndbøkene dekker ikke dette spørsmålet.",
        "withheld": "Avsnittene i håndbøkene bekrefter ikke svaret modellen skrev, så det vises "
        "ikke; les det siterte avsnittet i stedet.",
        "quoted": "Fra håndboken",
        "sources": "Kilder",
    },
    "nl": {
        "never_named": "Ze noemen {names} nergens.",
        "declined": "De handleidingen behandelen deze vraag niet.",
        "withheld": "De passages uit de handleidingen bevestigen het antwoord van het model niet, "
        "dus het wordt niet getoond; lees de geciteerde passage.",
        "quoted": "Uit de handleiding",
        "sources": "Bronnen",
    },
    "de": {
        "never_named": "Sie erwähnen {names} nirgends.",
        "declined": "Die Handbücher behandeln diese Frage nicht.",
        "withheld": "Die Abschnitte der Handbücher bestätigen die Antwort des Modells nicht; sie "
        "wird nicht gezeigt. Lesen Sie den zitierten Abschnitt.",
        "quoted": "Aus dem Handbuch",
        "sources": "Quellen",
    },
    "fr": {
        "never_named": "Ils ne mentionnent jamais {names}.",
        "declined": "Les manuels ne traitent pas cette question.",
        "withheld": "Les passages des manuels ne confirment pas la réponse du modèle ; elle n'est "
        "pas affichée. Lisez le passage cité.",
        "quoted": "Extrait du manuel",
        "sources": "Sources",
    },
    "es": {
        "never_named": "Nunca mencionan {names}.",
        "declined": "Los manuales no tratan esta pregunta.",
        "withheld": "Los pasajes de los manuales no confirman la respuesta del modelo; no se "
        "muestra. Lea el pasaje citado.",
        "quoted": "Del manual",
        "sources": "Fuentes",
    },
}


def say(language: str, what: str) -> str:
    """A user-facing text in `language` (English where it has none)."""
    return _SAY.get(language, _SAY[MAIN]).get(what) or _SAY[MAIN][what]
