"""What an answer is, and its one serialised form.

`Answer` holds what `ask` produced: the text shown, whether and why it was declined, the
manual's quoted lines (`Evidence`), the numbered passages (`Citation`) and the support check
(`SupportReport`). `Answer.to_dict()` is the only serialiser, so every output uses the same words
and values: `ask --json` prints it; the server's `outpost` field is its keys a client shows,
with the citations shown (runtime/serve/api.py, `outpost_field`); an `eval` row is all of it with the
question's judgement beside it (runtime/ask/evaluate.py, `judge`), where only `evidence` keeps
eval's own older shape (the quoted texts; the records are `evidence_records`). Declining is
"declined" everywhere; `refused`, its old name, is kept beside it until the next release
(docs/changelog.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from outpost.runtime.ask.generate import Timings


@dataclass(frozen=True)
class Span:
    """Verbatim text of a chunk: `text` is the stored chunk text from `start` to `end`."""

    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Evidence:
    """A quoted run of the manual's lines, with where it is. `lead`, when the run needs one it
    does not touch (a table's header row, a list's lead-in), is quoted the same way; `mark`,
    when the question asks for a value, is where the run gives it."""

    chunk_id: int
    start: int
    end: int
    text: str
    source: str
    heading: str
    score: float
    lead: Span | None = None
    mark: Span | None = None  # inside the run: the value the question asks for (a number, a name)

    def words(self) -> str:
        """The quote as attribution reads it: its lead line, its heading and the run."""
        return " ".join(
            x for x in (self.lead.text if self.lead else "", self.heading, self.text) if x
        )


@dataclass(frozen=True)
class Citation:
    """A passage given to the model, numbered as the answer cites it; `cited`: the answer names it."""

    n: int
    source: str
    heading: str
    score: float
    chunk_id: int
    cited: bool


@dataclass(frozen=True)
class SupportReport:
    """The support check of the model's text: the facts it holds, those the passages lack, and
    what was done (`shown`, `cut` at the first unsupported sentence, or the `evidence` shown
    instead); `numbers_blocked`: digits the model was kept from writing."""

    facts: list[str]
    unsupported: list[str]
    action: str
    numbers_blocked: int = 0


@dataclass
class Answer:
    question: str
    text: str = ""
    declined: bool = False
    declined_by: str | None = None  # threshold | name | evidence | model | support
    unknown: list[str] = field(default_factory=list)  # names asked that no chunk holds
    grounded: bool = True
    best_score: float = 0.0
    threshold: float = 0.0
    citations: list[Citation] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    retrieval_s: float = 0.0
    refusal_p: float | None = None  # the model's probability of declining, when it opened so
    evidence: list[Evidence] = field(default_factory=list)  # the quoted lines, best first
    evidence_score: float | None = None  # coverage of the question's weight by what was read
    support: SupportReport | None = None
    generated: str = ""  # the model's text before the support check (for evaluation)
    passages: list[str] = field(default_factory=list)  # the texts the model was given
    # "generated": the model's sentences, each attributable to the first quote, above it;
    # "quoted": the manual's line is the answer (the model's text was not attributable)
    answer_mode: str | None = None
    first_shown_s: float = 0.0  # question in -> the first text a screen can show (the quote)
    language: str = "en"  # the question's, which the shown texts follow
    # The lines the ranker rated best after the first quote, (source, heading, line): what the
    # field log keeps as a confirmed quote's negatives (docs/feedback.md); not serialised.
    candidates: list[tuple[str, str, str]] = field(default_factory=list)

    def shown_citations(self) -> list[Citation]:
        """The citations shown with an answer: those it names, else every passage given."""
        if self.declined:
            return []
        return [c for c in self.citations if c.cited] or self.citations

    def to_dict(self) -> dict:
        return {
            "question": self.question,
            "answer": self.text,
            "declined": self.declined,
            "refused": self.declined,  # the old name; removed in the next release
            "declined_by": self.declined_by,
            "unknown_names": self.unknown,
            "answer_mode": self.answer_mode,
            "language": self.language,
            "evidence": [asdict(e) for e in self.evidence],
            "support": None if self.support is None else asdict(self.support),
            "citations": [asdict(c) for c in self.citations],
            "grounded": self.grounded,
            "best_score": round(self.best_score, 4),
            "threshold": round(self.threshold, 4),
            "evidence_score": _round(self.evidence_score),
            "refusal_p": _round(self.refusal_p),
            "timings": {
                "retrieval_s": round(self.retrieval_s, 4),
                "first_shown_s": round(self.first_shown_s, 4),
                **self.timings.as_dict(),
            },
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
