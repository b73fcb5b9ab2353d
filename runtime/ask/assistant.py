"""The ask pipeline (`Assistant.ask`), one walk in this order:

1. check the question, and that it fits the context budget (in its language's prompt) before
   any search; detect its language; analyse it once (runtime/ask/question.py: the query with
   the previous turn, its terms, answer kinds, keywords and names, which chunks may answer);
2. search (`_search`, runtime/ask/retrieve.py): dense search fused with keyword search for
   CANDIDATES chunks with the windows reader (the top k with the chunks reader); the best score
   of the top k is the one the threshold reads; `gauge` (runtime/ask/rank.py) reads the
   candidates' words: the answerability, no model run;
3. decline before ranking (runtime/ask/decide.py): `threshold`, then `name`;
4. rank the lines (`rank`, with the learned ranker when the bundle has one) and choose the
   windows the model reads; quote the best lines (EVIDENCE_SPANS, runtime/ask/quote.py), the
   windows widened to hold them; fit the prompt; decline by `evidence`;
5. hand the quote to `on_quote` (the first text a screen shows), then generate (`_write`):
   with the support check on, each sentence is shown only once the passages support it and it
   is attributable to the quote (runtime/ask/attribute.py), and the writing stops at the first
   that is not, or as soon as the one being written can no longer be (`doomed`);
6. settle (`_settle`): the model's sentences (`generated`), the quote (`quoted`), or a decline
   (`model`, `support`); then cite the passages given, marking those the answer names.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from outpost.runtime.ask.answer import Answer, Citation, Evidence, SupportReport
from outpost.runtime.ask.attribute import attributable, doomed
from outpost.runtime.ask.decide import after_ranking, before_ranking, decline
from outpost.runtime.ask.embed import open_embedder
from outpost.runtime.ask.generate import GenerationSettings, Generator, LogitsProcessor, Run
from outpost.runtime.ask.prompt import (
    REFUSAL_OPENINGS,
    Passage,
    check_fits,
    check_question,
    fit_messages,
    is_refusal,
)
from outpost.runtime.ask.question import Question, analyse
from outpost.runtime.ask.quote import quotes
from outpost.runtime.ask.rank import Reading, gauge, rank
from outpost.runtime.ask.retrieve import Hit, Retriever
from outpost.runtime.ask.support import SupportCheck, check, number_copy
from outpost.runtime.bundle.open import Bundle, open_store
from outpost.runtime.config import AskConfig
from outpost.runtime.errors import (
    BundleError,
    LibraryError,
    ModelError,
    OutpostError,
    UsageError,
    one_line,
)
from outpost.runtime.language.detect import bundle_languages, question_language
from outpost.runtime.language.texts import say

CANDIDATES = 24  # chunks whose lines the windows reader ranks (docs/quality.md, issue 29)
EVIDENCE_SPANS = 2  # quoted lines under an answer: the best and the next (answers often span two)


class Assistant:
    def __init__(self, bundle: Bundle, config: AskConfig):
        config.check()
        self.bundle = bundle
        m = bundle.manifest
        self.top_k = config.top_k or m.retrieval.top_k
        threshold = config.threshold
        self.threshold = m.retrieval.grounding_threshold if threshold is None else threshold
        self.hybrid = config.hybrid
        with loading(m.embedder.file):
            embedder = open_embedder(bundle.path, m.embedder, config.threads)
        with loading(f"{m.index.file} or {m.store.file}"):
            self.retriever = Retriever(
                bundle.file(m.index.file),
                open_store(bundle, config.verify or bool(config.trust)),
                embedder.dim,
                embedder,
                m.index.expansion_search,
                exact=m.index.search == "exact",
            )
            if (count := self.retriever.store.check()) != m.store.count:
                raise ValueError(f"{count} chunks, the manifest says {m.store.count}")
        self.reranker = None
        if m.ranker is not None and config.rerank:
            from outpost.runtime.ask.rerank import Reranker

            with loading(f"{m.ranker.dir}/{m.ranker.model}"):
                self.reranker = Reranker(bundle.path / m.ranker.dir, config.threads)
        self.main_language, self.languages, self.chunk_languages = bundle_languages(m)
        self.embedder_languages = m.embedder.languages  # None: any language
        self.adapters = tuple(sorted(m.model.adapters))
        self.adapter = config.adapter
        self.check_adapter(self.adapter)
        files = {name: bundle.file(a.file) for name, a in m.model.adapters.items()}
        with loading(m.model.dir + "/"):  # the tokenizer now, the weights in load_model
            self.generator = Generator(bundle.model_dir, config.threads, files)
        limit = self.generator.context_length
        self.max_context = min(config.max_context or m.generation.max_context, limit)
        self.settings = GenerationSettings(
            max_new_tokens=config.max_new_tokens or m.generation.max_new_tokens,
            repetition_penalty=m.generation.repetition_penalty,
            draft_tokens=config.draft_tokens,
        )
        refusal_p = m.generation.refusal_min_p if config.refusal_p is None else config.refusal_p
        self.gate = self.generator.refusal_gate(REFUSAL_OPENINGS, refusal_p)
        self.reader, self.support = config.reader, config.support
        self.min_evidence = (
            m.generation.min_evidence if config.min_evidence is None else config.min_evidence
        )
        self.windows, self.radius = m.generation.windows, m.generation.window_radius
        if self.settings.max_new_tokens >= self.max_context:
            raise UsageError(
                f"--max-new-tokens ({self.settings.max_new_tokens}) leaves no room for the prompt "
                f"in --max-context ({self.max_context})"
            )

    def load_model(self) -> None:
        """The LLM's weights (~0.3 s for the embedded model) and the vocabulary scan for the
        number copy (~0.1 s), once. A question loads them after its quote is shown, so a fresh
        `ask` prints the manual's line sooner; the server loads them with the release."""
        if self.generator.loaded:
            return
        with loading(self.bundle.manifest.model.dir + "/"):
            self.generator.load()
        if self.support:
            self.generator.digit_tokens()

    def _let_go_of_search(self) -> None:
        self.retriever.embedder = None  # type: ignore[assignment]
        self.reranker = None
        gc.collect()

    def check_adapter(self, name: str | None) -> str | None:
        """`name` if the bundle has that adapter (None: the default); else a one-line error."""
        if name is not None and name not in self.adapters:
            has = ", ".join(self.adapters) if self.adapters else "none"
            raise UsageError(
                f"--adapter {name}: this bundle has no such adapter (it has: {has}); "
                "`outpost info` lists them"
            )
        return name

    def ask(
        self,
        question: str,
        history: list[dict] | None = None,
        on_text: Callable[[str], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        max_new_tokens: int | None = None,
        on_quote: Callable[[Evidence], None] | None = None,
        adapter: str | None = None,
        last: bool = False,
    ) -> Answer:
        """Answer one question; `max_new_tokens` may shorten (never lengthen) this answer.

        Extractive first: once the lines are ranked, the best line (with the neighbours it
        needs) is the quote, handed to `on_quote` before anything is generated. The model's
        sentences reach `on_text` only when each is supported by the passages and attributable
        to a quoted window; when none is, the quote is the answer (`answer_mode` "quoted").

        `last`: the process asks nothing after this (`outpost ask`). The embedder and the ranker
        are let go once the lines are ranked, before the LLM loads, so the two never share the
        memory; the Assistant cannot search again."""
        question = check_question(question)
        if self.retriever.embedder is None:
            raise RuntimeError("this Assistant answered its last question (ask(last=True))")
        budget = self.max_context - self.settings.max_new_tokens
        count = self.generator.count_tokens
        check_fits(question, count, budget)  # before any search, at a bounded cost
        language = question_language(question, self.languages, self.main_language)
        if language != "en":  # the prompt in the question's language is a little longer
            check_fits(question, count, budget, language)
        adapter = self.check_adapter(adapter) or self.adapter
        settings = dataclasses.replace(self.settings, adapter=adapter)
        if max_new_tokens is not None and max_new_tokens < settings.max_new_tokens:
            settings = dataclasses.replace(settings, max_new_tokens=max(1, max_new_tokens))
        answer = Answer(question=question, threshold=self.threshold, language=language)
        start = time.perf_counter()
        q = self._analyse(question, history, language)
        hits = self._search(q, answer)
        store = self.retriever.store
        found = gauge(q, hits, store) if self.reader == "windows" else None
        if found is not None:
            answer.evidence_score = found.answerability
        if why := before_ranking(answer, q, store, self.threshold, self.min_evidence):
            answer.retrieval_s = time.perf_counter() - start
            return decline(answer, why, on_text)
        reading, evidence = None, []
        shown_passages = [(h, 0, len(h.text)) for h in hits]
        if found is not None:
            embedder, ranker = self.retriever.embedder, self.reranker  # no local outlives this
            reading = rank(q, found, hits, embedder, self.windows, self.radius, ranker)
            del embedder, ranker
            evidence = quotes(reading, hits, EVIDENCE_SPANS, q)
            answer.candidates = runners_up(reading, hits, evidence)
            windows = [(hits[w.hit], w.start, w.end) for w in reading.windows]
            shown_passages = cover(windows, evidence)
        answer.retrieval_s = time.perf_counter() - start
        if why := after_ranking(reading, self.min_evidence):
            return decline(answer, why, on_text)
        answer.evidence = evidence
        answer.first_shown_s = time.perf_counter() - start
        if on_quote and answer.evidence:
            on_quote(answer.evidence[0])
        passages = [Passage(h.source, h.heading, h.text[a:b]) for h, a, b in shown_passages]
        messages, kept = fit_messages(question, passages, history or [], count, budget, language)
        given = answer.passages = [p.text for p in passages[:kept]]
        if last:
            self._let_go_of_search()
        self.load_model()
        writing = time.perf_counter() - start  # the first question of a process loads the LLM
        shown, run = self._write(answer, q, messages, settings, given, on_text, should_stop)
        self._settle(answer, shown, run, given, on_text)
        if not answer.evidence:  # nothing was shown before the model's first token
            answer.first_shown_s = writing + answer.timings.first_token_s
        answer.citations = cite([h for h, _, _ in shown_passages[:kept]], answer.text)
        return answer

    def _analyse(self, text: str, history: list[dict] | None, language: str) -> Question:
        """The question as every stage reads it: in a bundle of several languages only the
        manual in the question's language answers it; an embedder that does not read that
        language gives no dense weight."""
        keep = None
        if len(self.languages) > 1:
            keep = functools.partial(self.chunk_languages.holds, language=language)
        reads = self.embedder_languages
        dense = 1.0 if reads is None or language in reads else 0.0
        return analyse(text, history, language, keep, dense)

    def _search(self, q: Question, answer: Answer) -> list[Hit]:
        """The candidate chunks; sets the answer's best retrieval score (of the top k)."""
        wanted = max(self.top_k, CANDIDATES) if self.reader == "windows" else self.top_k
        hits = self.retriever.search(q, wanted, self.hybrid)
        answer.best_score = max((h.score for h in hits[: self.top_k]), default=0.0)
        return hits

    def _write(
        self,
        answer: Answer,
        q: Question,
        messages: list[dict],
        settings: GenerationSettings,
        given: list[str],
        on_text: Callable[[str], None] | None,
        should_stop: Callable[[], bool],
    ) -> tuple[Shown, Run]:
        """Generate, showing each sentence only when the passages support it and it is
        attributable to the first quote; stops at the first that is not."""
        question = q.text
        # The model's sentences must come from the ranker's best window, the quote shown first:
        # attributing to any window let a tuned model lift a wrong line over the right one.
        window = answer.evidence[0].words() if answer.evidence else None
        processors: list[LogitsProcessor] = [self.gate.processor()] if self.gate else []
        if self.support:
            processors.append(number_copy(self.generator, " ".join([*given, question]), len(given)))
        run = self.generator.run(
            messages, settings, processors, lambda: should_stop() or looping(run.result.text)
        )

        def supported(sentence: str) -> SupportCheck:
            result = check(sentence, given, question)
            if result.ok and window and not attributable(sentence, window, q):
                result.unsupported.append("(not attributable to the quoted line)")
            return result

        def hopeless(prefix: str) -> bool:  # the sentence being written will not be shown
            return bool(window) and doomed(prefix, window or "", q)

        shown = Shown(on_text, supported if self.support else None, hopeless)
        for piece in run:
            if not shown.add(piece):
                break  # a sentence the passages or the quote do not back: stop writing
        else:
            shown.finish()
        return shown, run

    def _settle(
        self,
        answer: Answer,
        shown: Shown,
        run: Run,
        given: list[str],
        on_text: Callable[[str], None] | None,
    ) -> None:
        """What the answer is, from what was written and shown: the model's sentences
        (`generated`), the quote (`quoted`), or a decline (by the model, or withheld)."""
        answer.timings = run.result.timings
        answer.generated = run.result.text.strip()
        answer.text = shown.text.strip()
        answer.refusal_p = run.result.measured.get("refusal_p") if self.gate else None
        declined = is_refusal(answer.text) or is_refusal(answer.generated)
        if self.support:
            action = "shown" if shown.failed is None else ("cut" if answer.text else "evidence")
            found = check(answer.generated, given, answer.question)
            answer.support = SupportReport(
                found.facts,
                found.unsupported,
                action,
                run.result.measured.get("numbers_blocked", 0),
            )
        if declined and not answer.evidence:
            answer.declined, answer.declined_by = True, "model"
        elif answer.evidence and (declined or not answer.text):
            # The model declined or wrote nothing attributable: the manual's line is the answer.
            answer.text, answer.answer_mode = answer.evidence[0].text, "quoted"
        elif answer.text:
            answer.answer_mode = "generated"
        elif self.support and not answer.evidence:
            withheld = say(answer.language, "withheld")
            answer.text, answer.declined, answer.declined_by = withheld, True, "support"
            if on_text:
                on_text(withheld)


class Shown:
    """What reaches the screen, a sentence at a time: with a `check`, each sentence is shown only
    once its facts are found in the passages; the first one that fails ends the answer there."""

    _END = re.compile(r"(?<=[.!?:;])\s+|\n+")

    def __init__(
        self,
        on_text: Callable[[str], None] | None,
        check_sentence: Callable[[str], SupportCheck] | None = None,
        hopeless: Callable[[str], bool] | None = None,
    ):
        self.on_text, self.check, self.hopeless = on_text, check_sentence, hopeless
        self.text, self.pending = "", ""
        self.failed: str | None = None  # the sentence that was not shown

    def add(self, piece: str) -> bool:
        """False once writing on cannot show more: a sentence failed its check, or (with
        `hopeless`) the one being written can no longer pass it."""
        if self.check is None:
            return self._show(piece)
        self.pending += piece
        while m := self._END.search(self.pending):
            sentence, self.pending = self.pending[: m.end()], self.pending[m.end() :]
            if not self._checked(sentence):
                return False
        if self.hopeless and piece[:1].isspace() and self.hopeless(self.pending):
            self.failed = self.pending  # stopped mid-sentence: it would have failed whole
            return False
        return True

    def finish(self) -> bool:
        sentence, self.pending = self.pending, ""
        return self._checked(sentence) if self.check and sentence.strip() else True

    def _checked(self, sentence: str) -> bool:
        if sentence.strip() and self.check is not None and not self.check(sentence).ok:
            self.failed = sentence
            return False
        return self._show(sentence)

    def _show(self, text: str) -> bool:
        self.text += text
        if self.on_text and text:
            self.on_text(text)
        return True


@contextmanager
def loading(part: str) -> Iterator[None]:
    """A part of the bundle that does not load (a foreign or damaged file opened with
    --no-verify) is one BundleError naming it, not a library traceback."""
    try:
        yield
    except LibraryError:
        raise  # the installation's problem: its own message says what to do
    except ModelError as e:  # onnx_session: the file is not a model onnxruntime can open
        raise BundleError(
            f"cannot load {part} ({one_line(str(e))[:200]}); copy the bundle again or re-export it"
        ) from None
    except OutpostError:
        raise
    except Exception as e:  # noqa: BLE001 - onnxruntime, usearch and sqlite raise their own types
        detail = one_line(str(e))[:160]
        raise BundleError(
            f"cannot load {part} ({type(e).__name__}: {detail}); copy the bundle again or re-export it"
        ) from None


LOOP_CHARS = 48


def looping(text: str) -> bool:
    """True once the answer repeats its own last LOOP_CHARS characters: small models loop."""
    return len(text) > 2 * LOOP_CHARS and text[-LOOP_CHARS:] in text[:-LOOP_CHARS]


def cite(hits: list[Hit], text: str) -> list[Citation]:
    """Numbered citations for the passages given to the model; `cited` marks those the answer names."""
    named = {int(n) for n in re.findall(r"\[(\d+)\]", text)}
    return [
        Citation(i, h.source, h.heading, round(h.score, 4), h.chunk_id, i in named)
        for i, h in enumerate(hits, 1)
    ]


RUNNERS_UP = 6  # lines after the first quote the field log keeps (a confirmed quote's negatives)


def runners_up(reading: Reading, hits: list[Hit], evidence: list[Evidence]) -> list[tuple]:
    """The best-ranked lines outside the first quote, as (source, heading, line)."""
    first = evidence[0] if evidence else None
    out: list[tuple[str, str, str]] = []
    for j in np.argsort(-reading.scores):
        u = reading.units[int(j)]
        hit = hits[u.hit]
        inside = first and hit.chunk_id == first.chunk_id and first.start <= u.start < first.end
        if not inside:
            out.append((hit.source, hit.heading, u.text))
        if len(out) >= RUNNERS_UP:
            break
    return out


def cover(passages: list[tuple], evidence: list[Evidence]) -> list[tuple]:
    """The windows the model reads, each widened to hold the quotes shown from it: what the
    technician is shown is always among what the model read (and the support check reads)."""
    out = list(passages)
    for e in evidence:
        for i, (h, a, b) in enumerate(out):
            if h.chunk_id == e.chunk_id and a <= e.end and e.start <= b:
                out[i] = (h, min(a, e.start), max(b, e.end))
                break
        else:
            for i, (h, a, b) in enumerate(out):
                if h.chunk_id == e.chunk_id:
                    out[i] = (h, min(a, e.start), max(b, e.end))
                    break
    return out


def open_assistant(path: str | Path, config: AskConfig | None = None) -> Assistant:
    """Open (a bundle folder or a bundles folder's `current`), pin and verify its files, and load
    the models from the pinned files (runtime/bundle/open.py): what is answered from is what was
    verified. Asking for trust (`config.trust`) always verifies."""
    from outpost.runtime.bundle.install import resolve
    from outpost.runtime.bundle.verify import open_verified

    config = config or AskConfig()
    trusted = [Path(t) for t in config.trust]
    bundle = open_verified(resolve(path), trusted, verify=config.verify)
    try:
        return Assistant(bundle, config)
    except BaseException:
        bundle.close()
        raise
