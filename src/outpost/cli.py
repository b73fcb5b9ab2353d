"""`outpost` command line. Each command imports what it needs when it runs, so --help is instant."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from importlib import metadata
from typing import TYPE_CHECKING, Any

import click

from outpost.runtime import settings
from outpost.runtime.config import (
    TRUST_VARIABLE,
    AskConfig,
    EvalConfig,
    FeedbackConfig,
    InstallConfig,
    RecordConfig,
    RollbackConfig,
    ServeConfig,
    VerifyConfig,
)
from outpost.runtime.errors import OutpostError, UsageError, one_line

if TYPE_CHECKING:
    from outpost.runtime.ask.answer import Answer, Evidence
    from outpost.runtime.ask.assistant import Assistant
    from outpost.runtime.bundle.manifest import Languages
    from outpost.runtime.field.log import FieldLog

PLUGINS = "outpost.commands"  # entry-point group: build-side packages add commands here
FEEDBACK_PLUGINS = "outpost.feedback_commands"  # and `outpost feedback` subcommands (report)


@functools.cache
def _plugins(group: str = PLUGINS) -> dict[str, metadata.EntryPoint]:
    """Commands other packages register (e.g. export, train); loaded only when used."""
    return {ep.name: ep for ep in metadata.entry_points(group=group)}


class Group(click.Group):
    """Turns library errors into one `Error: ...` line and an exit code; no tracebacks.

    Besides its own (device) commands it lists the commands registered under the
    `outpost.commands` entry-point group, importing a command's module only when it is run or
    its help is shown. The runtime does not name them.
    """

    plugins = PLUGINS

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_plugins(self.plugins)))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in _plugins(self.plugins):
            command = _plugins(self.plugins)[name].load()
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            refuse_empty_trust()
            return super().invoke(ctx)
        except OutpostError as e:
            click.echo(f"Error: {one_line(str(e))}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except BrokenPipeError:  # `outpost ask … | head -2`: the reader left; nothing to say
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes at exit
            sys.exit(141)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as e:  # noqa: BLE001 - a bug: still one line; OUTPOST_DEBUG=1 shows where
            if os.environ.get("OUTPOST_DEBUG"):
                raise
            detail = one_line(str(e))[:200]
            click.echo(
                f"Error: internal error ({type(e).__name__}: {detail}); rerun with "
                "OUTPOST_DEBUG=1 for the traceback and report it",
                err=True,
            )
            sys.exit(1)


def refuse_empty_trust() -> None:
    """A trust variable that is set but empty would turn trust off without a word (click takes
    an empty variable for an unset one): it is a usage error instead."""
    value = os.environ.get(TRUST_VARIABLE)
    if value is not None and not value.strip():
        raise UsageError(
            f"{TRUST_VARIABLE} is set but empty, which would turn trust off; name the release "
            f"key's .pub file or folder, or unset it (unset {TRUST_VARIABLE})"
        )


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="outpost-llm")
def cli() -> None:
    """Outpost: offline, cited answers from your manuals on CPU-only devices.

    \b
    Build a bundle:   outpost export docs/ --out bundle/
    Ask it:           outpost ask bundle/ "How do I reset the controller?"
    """


_BIDI = {0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def safe(text: str, newlines: bool = False) -> str:
    """Text from a bundle (file names, headings, quotes, answers) as the terminal should show
    it: control characters (escape sequences, carriage returns, newlines unless `newlines`) and
    bidirectional overrides escaped, so a document's name cannot forge output or drive the
    terminal."""
    import unicodedata

    out = []
    for ch in text:
        if newlines and ch in "\n\t":
            out.append(ch)
        elif unicodedata.category(ch) == "Cc" or ord(ch) in _BIDI:
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


def _cores(threads: int) -> int:
    """--threads, at most the cores this process may use (with a note when it asked for more)."""
    from outpost.runtime.ask.generate import available_cores

    cores = available_cores()
    if threads > cores:
        click.echo(
            f"note: --threads {threads} is more than the {cores} cores available; using {cores}",
            err=True,
        )
        return cores
    return threads


def _ask_options(f: Callable[..., None]) -> Callable[..., None]:
    return settings.options(AskConfig)(f)


def _open(bundle: str, **options: object) -> Assistant:
    from outpost.runtime.ask.assistant import open_assistant

    config = settings.build(AskConfig, options)
    config.threads = _cores(config.threads)
    return open_assistant(bundle, config)


class _Screen:
    """What `ask` and `chat` print, quote first: the manual's line as soon as it is ranked (the
    first text a technician reads, before the model has written anything, as the kiosk shows
    it), then the model's sentences that pass the checks, then the sources."""

    def __init__(self, language: str):
        self.language, self.quoted, self.wrote = language, False, False

    def quote(self, e: Evidence) -> None:
        from outpost.runtime.language.texts import say

        where = safe(e.source + (f" > {e.heading}" if e.heading else ""))
        lead = f"{safe(e.lead.text)} \u2026 " if e.lead else ""
        # The quote's own line breaks (a value and the line after it) stay, indented under it.
        text = safe(e.text, newlines=True).replace("\n", "\n   ")
        click.echo(f"{say(self.language, 'quoted')} ({where}):\n  \u201c{lead}{text}\u201d")
        if e.mark is not None and e.mark.text.strip() != e.text.strip():
            click.echo(f"  \u2192 {safe(e.mark.text)}")  # the value the question asks for
        self.quoted = True

    def text(self, piece: str) -> None:
        if self.quoted and not self.wrote:
            click.echo()  # the model's sentences under the quote
        self.wrote = True
        click.echo(safe(piece, newlines=True), nl=False)

    def after(self, answer: Answer, timings: bool) -> None:
        """What follows: the end of the written text, why a sentence was withheld, the sources
        and, with --timings, the timings."""
        if self.wrote:
            click.echo()
        if answer.declined_by == "support" and answer.support:
            missing = safe(", ".join(answer.support.unsupported))
            click.echo(f"(not shown: {missing} is not in the passages)", err=True)
        _print_sources(answer)
        if timings:
            _print_timings(answer)


def _screen(assistant: Assistant, question: str) -> _Screen:
    from outpost.runtime.language.detect import question_language

    return _Screen(question_language(question, assistant.languages, assistant.main_language))


def _print_sources(answer: Answer) -> None:
    from outpost.runtime.language.texts import say

    cited = answer.shown_citations()
    if not cited:
        return
    click.echo(f"\n{say(answer.language, 'sources')}:")
    for c in cited:
        where = safe(c.source + (f" > {c.heading}" if c.heading else ""))
        click.echo(f"  [{c.n}] {where}")


def _print_timings(answer: Answer) -> None:
    t = answer.timings
    click.echo(
        f"retrieval {answer.retrieval_s * 1000:.0f} ms, prompt {t.prompt_tokens} tokens, "
        f"first token {t.first_token_s:.2f} s, {t.new_tokens} tokens at {t.tokens_per_s:.1f} tokens/s",
        err=True,
    )


def _read_line() -> str:
    """One line of stdin as UTF-8 ("" at the end); UnicodeDecodeError for other bytes."""
    return sys.stdin.buffer.readline().decode("utf-8")


def _read_stdin() -> str:
    from outpost.runtime.errors import InputError

    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(
            f"the question on stdin is not UTF-8 text (byte {e.start}); send UTF-8"
        ) from None


@cli.command()
@click.argument("bundle", type=click.Path(), envvar="OUTPOST_BUNDLE")
@click.argument("question", required=False)
@_ask_options
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the answer, citations, scores and timings as JSON.",
)
@click.option("--timings", is_flag=True, help="Print time to first token and tokens/s on stderr.")
@settings.options(RecordConfig)
def ask(
    bundle: str,
    question: str | None,
    as_json: bool,
    timings: bool,
    log: str | None,
    **options: object,
) -> None:
    """Answer QUESTION (or stdin) from the documents in BUNDLE, with citations."""
    from outpost.runtime.ask.prompt import check_question

    if question is None or question == "-":
        question = "" if sys.stdin.isatty() else _read_stdin()
    question = check_question(question)
    field = _field_log(log)
    assistant = _open(bundle, **options)
    if as_json:
        answer = assistant.ask(question, last=True)
        click.echo(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
    else:
        screen = _screen(assistant, question)
        answer = assistant.ask(question, on_text=screen.text, on_quote=screen.quote, last=True)
        screen.after(answer, timings)
    if field is not None:
        answer_id = _record(field, assistant, answer, "ask", follow_up=False)
        click.echo(
            f"(recorded as {answer_id}; rate it: outpost feedback rate --log {log} {answer_id} yes|no)",
            err=True,
        )


def _field_log(folder: str | None) -> FieldLog | None:
    """The field log `--log` names (checked before any question is answered), or None."""
    if folder is None:
        return None
    from outpost.runtime.field.log import FieldLog, outside_bundles

    field = FieldLog(outside_bundles(folder))
    field.check()
    return field


def _record(
    field: FieldLog, assistant: Assistant, answer: Answer, via: str, follow_up: bool
) -> str:
    from outpost.runtime.field.entry import answer_entry, new_id

    answer_id = new_id()
    b = assistant.bundle
    entry = answer_entry(
        answer,
        id=answer_id,
        via=via,
        bundle=b.content_id,
        signed_by=b.signed_by,
        adapter=assistant.adapter,
        follow_up=follow_up,
    )
    field.append(entry)
    return answer_id


@cli.command()
@click.argument("bundle", type=click.Path(), envvar="OUTPOST_BUNDLE")
@_ask_options
@click.option(
    "--timings", is_flag=True, help="Print time to first token and tokens/s after each answer."
)
@settings.options(RecordConfig)
def chat(bundle: str, timings: bool, log: str | None, **options: object) -> None:
    """Ask several questions in a row; earlier turns are kept within the context budget.

    Ctrl-C stops the current answer; Ctrl-D or /quit ends the chat. With --log, /yes or
    /no [what you were looking for] rates the last answer.
    """
    field = _field_log(log)
    assistant = _open(bundle, **options)
    history: list[dict] = []
    last: str | None = None  # the last answer's id in the field log
    interactive = sys.stdin.isatty()
    while True:
        try:
            question = input("> ") if interactive else _read_line()
        except EOFError:
            break
        except UnicodeDecodeError as e:
            click.echo(
                f"Error: the question is not UTF-8 text (byte {e.start}); send UTF-8", err=True
            )
            continue
        if not interactive and question == "":
            break
        question = question.strip()
        if question in ("/quit", "/exit"):
            break
        if not question:
            continue
        verdict, _, note = question.partition(" ")
        if verdict in ("/yes", "/no"):
            if field is None or last is None:
                why = "start chat with --log DIR to record" if field is None else "no answer yet"
                click.echo(f"(nothing to rate: {why})", err=True)
                continue
            from outpost.runtime.field.entry import verdict_entry

            field.append(verdict_entry(last, verdict == "/yes", note, "chat"))
            click.echo("(thank you: recorded)", err=True)
            continue
        screen = _screen(assistant, question)
        try:
            answer = assistant.ask(question, history, on_text=screen.text, on_quote=screen.quote)
        except KeyboardInterrupt:
            click.echo("\n(stopped)", err=True)
            continue
        except OutpostError as e:
            click.echo(f"Error: {one_line(str(e))}", err=True)
            continue
        screen.after(answer, timings)
        if field is not None:
            last = _record(field, assistant, answer, "chat", follow_up=bool(history))
        history += [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer.text},
        ]


@cli.command()
@click.argument("bundle", type=click.Path(), envvar="OUTPOST_BUNDLE")
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
def info(bundle: str, as_json: bool) -> None:
    """Describe BUNDLE: model, embedder, index, documents and export checks."""
    from outpost.runtime.bundle.install import resolve
    from outpost.runtime.bundle.manifest import conversion_in_words
    from outpost.runtime.bundle.open import open_bundle

    m = open_bundle(resolve(bundle)).manifest
    if as_json:
        click.echo(json.dumps(m.to_dict(), indent=2))
        return
    model, emb, idx, checks, quant = m.model, m.embedder, m.index, m.checks, m.model.quantization
    retrieval = checks.get("retrieval", {})
    rows = [
        (
            "bundle",
            f"{bundle} ({m.size_bytes / 1e6:.1f} MB, {len(m.files)} files, schema {m.schema})",
        ),
        ("created", f"{m.created} in {m.export_seconds or '?'} s"),
        (
            "model",
            f"{model.base} ({model.parameters / 1e6:.0f}M parameters, {quant.get('precision', '?')}"
            + (f", {quant.get('algo_config', 'rtn')}" if quant.get("precision") != "fp32" else "")
            + ")",
        ),
        ("adapter", model.adapter.get("path", "?") + " (merged)" if model.adapter else "none"),
        *(
            (
                f"{name}",
                f"runtime adapter (--adapter {name}): rank {a.rank}, {a.parameters / 1e6:.1f}M "
                f"parameters, from {a.source}; {conversion_in_words(a.conversion)}",
            )
            for name, a in model.adapters.items()
        ),
        (
            "embedder",
            f"{emb.id} ({emb.dim}-d, {emb.pooling} pooling, {emb.variant}; "
            + ("reads " + ", ".join(emb.languages) if emb.languages else "languages not stated")
            + ")",
        ),
        ("languages", _languages_in_words(m.languages)),
        ("index", f"{idx.count} chunks, usearch {idx.metric} {idx.dtype}"),
        ("documents", f"{len(m.sources.documents)} ({len(m.sources.skipped)} skipped)"),
        (
            "grounding",
            f"threshold {m.retrieval.grounding_threshold}, top-k {m.retrieval.top_k}, "
            f"declines at p >= {m.generation.refusal_min_p}",
        ),
        ("conversion", conversion_in_words(checks.get("conversion", {}))),
        (
            "retrieval",
            ", ".join(
                f"{k} {v}" for k, v in retrieval.items() if k.startswith(("dense", "hybrid"))
            ),
        ),
    ]
    for key, value in rows:
        click.echo(f"{key:>10}  {safe(value)}")


def _languages_in_words(info: Languages) -> str:
    """The manifest's `languages` as one line: chunks per language, the main one."""
    if not info:
        return "en (a bundle from before language detection)"
    counts = ", ".join(f"{k} {v}" for k, v in sorted(info.get("chunks", {}).items()))
    mixed = sum(r[1] for runs in (info.get("also") or {}).values() for r in runs)
    return (
        f"chunks in {counts}; main {info.get('main', 'en')}"
        + (f"; {mixed} chunks hold a second language" if mixed else "")
        + ("; forced" if info.get("forced") else "")
    )


@cli.command()
@click.argument("bundle", type=click.Path(), envvar="OUTPOST_BUNDLE")
@settings.options(VerifyConfig)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def verify(bundle: str, as_json: bool, **options: object) -> None:
    """Check every file of BUNDLE against bundle.json (size and sha256), the index binding and,
    with --trust, the signature. Names each missing, changed or unexpected file."""
    from pathlib import Path

    from outpost.runtime.bundle.install import resolve
    from outpost.runtime.bundle.open import open_pinned
    from outpost.runtime.bundle.verify import load_public_keys, problems_of

    trust = settings.build(VerifyConfig, options).trust
    keys = load_public_keys([Path(t) for t in trust]) if trust else None
    b = open_pinned(resolve(bundle))
    try:
        problems = problems_of(b, keys, hashes=True, unexpected=True)
    finally:
        b.close()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "bundle": str(b.path),
                    "ok": not problems,
                    "files": len(b.manifest.files),
                    "problems": [p.__dict__ for p in problems],
                },
                indent=2,
            )
        )
    else:
        for p in problems:
            click.echo(f"{p.kind:>10}  {safe(p.path)}  ({safe(p.detail)})")
        if not problems:
            signed = ", signature valid" if trust else ""
            click.echo(f"ok: {len(b.manifest.files)} files match bundle.json{signed}")
    if problems:
        raise OutpostError(
            f"{len(problems)} problem(s) in {b.path}; copy the bundle again or re-export it"
        )


@cli.command()
@click.argument("archive", type=click.Path())
@settings.options(InstallConfig)
def install(archive: str, **options: object) -> None:
    """Check ARCHIVE against its bundle.json (and signature), extract it, verify it, then switch
    BUNDLES/current to it atomically."""
    from pathlib import Path

    from outpost.runtime.bundle.install import install as install_archive

    config = settings.build(InstallConfig, options)
    trusted = [Path(t) for t in config.trust]
    cid = install_archive(Path(archive), Path(config.bundles), trusted, keep=config.keep)
    done = "already installed" if cid.already else "installed"
    click.echo(f"{done} {cid[:16]}; {config.bundles}/current points at it")


@cli.command()
@settings.options(RollbackConfig)
def rollback(**options: object) -> None:
    """Point BUNDLES/current back at the previously installed bundle, once that bundle verifies
    (every file's sha256 and, with --trust, its signature); a damaged one is refused."""
    from pathlib import Path

    from outpost.runtime.bundle.install import rollback as roll_back

    config = settings.build(RollbackConfig, options)
    cid = roll_back(Path(config.bundles), [Path(t) for t in config.trust])
    click.echo(f"rolled back; current is {cid[:16]}")


@cli.command()
@click.argument("bundle", type=click.Path(), envvar="OUTPOST_BUNDLE")
@settings.options(ServeConfig)
def serve(bundle: str, **options: object) -> None:
    """Serve BUNDLE (or a bundles folder, following its `current`) over HTTP: an OpenAI-compatible
    API at /v1 and a kiosk page at /. Ctrl-C stops it."""
    from pathlib import Path

    from outpost.runtime.errors import InputError
    from outpost.runtime.serve.app import address, check_adapter, field_log, listen
    from outpost.runtime.serve.app import serve as run_server

    if not Path(bundle).exists():
        raise InputError(f"{bundle} does not exist; pass a bundle folder or a bundles folder")
    config = settings.build(ServeConfig, options, source=str(bundle))
    config.ask.threads = _cores(config.ask.threads)
    config.check()
    if config.ask.trust:
        from outpost.runtime.bundle.verify import load_public_keys

        # no key found: an error now, not per release
        load_public_keys([Path(t) for t in config.ask.trust])
    check_adapter(config)
    field_log(config)  # a log folder it cannot use: one error line, before "serving"
    sock = listen(config)  # a port in use: one error line, before "serving"
    where = address(config.host, sock.getsockname()[1])
    click.echo(
        f"serving {bundle} at {where}/ (kiosk page), {where}/v1 (API); Ctrl-C stops", err=True
    )
    run_server(config, sock)


@cli.command("eval")
@click.argument("bundle", type=click.Path(), envvar="OUTPOST_BUNDLE")
@settings.options(EvalConfig)
@_ask_options
@click.option(
    "--json", "as_json", is_flag=True, help="Print the report (with every answer) as JSON."
)
def eval_cmd(bundle: str, as_json: bool, **options: object) -> None:
    """Measure accuracy, refusals, citations and retrieval recall of BUNDLE on QUESTIONS."""
    from outpost.runtime.ask.evaluate import evaluate, load_questions
    from outpost.runtime.log import counter

    items = load_questions(settings.build(EvalConfig, options).questions)
    assistant = _open(bundle, **options)
    report = evaluate(assistant, items, counter("questions"))
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    for key, value in report.items():
        if key != "rows":
            click.echo(f"{key:>20}  {value}")
    for r in report["rows"]:
        if r["answerable"] and not r["correct"]:
            click.echo(f"  miss {r['id']}: {r['answer'][:100]!r}")


class FeedbackGroup(Group):
    plugins = FEEDBACK_PLUGINS  # `outpost feedback report` comes with the build side


@cli.group(cls=FeedbackGroup)
def feedback() -> None:
    """The field log: what was asked at this device and whether it helped (docs/feedback.md).

    \b
    At the device:       outpost feedback export --bundles DIR --out FILE
    At the workstation:  outpost feedback merge FILE... --out ALL
                         outpost feedback report ALL [--html report.html]
    """


def _log_of(options: dict[str, Any]) -> FieldLog:
    from outpost.runtime.field.log import FieldLog

    return FieldLog(settings.build(FeedbackConfig, options).folder())


@feedback.command("export")
@settings.options(FeedbackConfig)
@click.option("--out", "-o", required=True, type=click.Path(), help="The file to write.")
@click.option("--json", "as_json", is_flag=True, help="Print the file's header as JSON.")
def feedback_export(out: str, as_json: bool, **options: Any) -> None:
    """Write the field log as one file with a checksum, for the workstation."""
    from outpost.runtime.field import exchange

    log = _log_of(options)
    header = exchange.export(log, out)
    if as_json:
        click.echo(json.dumps(header, indent=2))
    else:
        click.echo(
            f"{header['entries']} answers written to {out} (sha256 {header['sha256'][:12]}…)"
        )


@feedback.command("merge")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(), help="The merged file to write.")
def feedback_merge(files: tuple[str, ...], out: str) -> None:
    """Merge the exports of many devices into one, each answer once (its latest verdict)."""
    from outpost.runtime.field import exchange

    rows, counts = exchange.merge(files)
    exchange.write(rows, out, counts["dropped"], device="merged")
    click.echo(
        f"{counts['kept']} answers from {counts['files']} files written to {out} "
        f"({counts['duplicates']} duplicates dropped)"
    )


@feedback.command("info")
@settings.options(FeedbackConfig)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def feedback_info(as_json: bool, **options: Any) -> None:
    """How much the field log holds: entries, bytes, files, dropped and torn lines."""
    import dataclasses

    log = _log_of(options)
    stats = {"folder": str(log.folder), **dataclasses.asdict(log.stats())}
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    for key, value in stats.items():
        click.echo(f"{key:8} {value}")


@feedback.command("rate")
@settings.options(FeedbackConfig)
@click.argument("answer_id")
@click.argument("verdict", type=click.Choice(["yes", "no"]))
@click.option("--note", default=None, help="What you were looking for.")
def feedback_rate(answer_id: str, verdict: str, note: str | None, **options: Any) -> None:
    """Say whether the answer ANSWER_ID (as `ask --log` printed it) answered your question."""
    from outpost.runtime.errors import InputError
    from outpost.runtime.field.entry import verdict_entry

    log = _log_of(options)
    if not any(e.get("kind") == "answer" and e.get("id") == answer_id for e in log.entries()):
        raise InputError(
            f"no answer {answer_id} in the field log {log.folder}; give an id `ask --log` printed"
        )
    log.append(verdict_entry(answer_id, verdict == "yes", note, "ask"))
    click.echo("recorded", err=True)


@feedback.command("wipe")
@settings.options(FeedbackConfig)
@click.option("--yes", "-y", is_flag=True, help="Do not ask first.")
def feedback_wipe(yes: bool, **options: Any) -> None:
    """Remove every entry of the field log (the questions people typed)."""
    log = _log_of(options)
    if not yes:
        click.confirm(f"Remove every entry of the field log in {log.folder}?", abort=True)
    removed = log.wipe()
    click.echo(f"removed {removed} log files from {log.folder}", err=True)


def main() -> None:
    cli(prog_name="outpost")


if __name__ == "__main__":
    main()
