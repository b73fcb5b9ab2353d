"""`outpost` command line. Each command imports what it needs when it runs, so --help is instant."""

from __future__ import annotations

import json
import sys

import click

from runtime.errors import OutpostError


class Group(click.Group):
    """Turns library errors into one `Error: ...` line and an exit code; no tracebacks."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OutpostError as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="outpost-llm")
def cli():
    """Outpost: offline, cited answers from your manuals on CPU-only devices.

    \b
    Build a bundle:   outpost export docs/ --out bundle/
    Ask it:           outpost ask bundle/ "How do I reset the controller?"
    """


def _ask_options(f):
    options = [
        click.option("--top-k", type=int, help="Passages given to the model (default: the bundle's)."),
        click.option("--threshold", type=float, help="Grounding threshold (default: calibrated at export)."),
        click.option("--refusal-p", type=float,
                     help="Decline only when the model's probability of declining reaches this (default: the bundle's)."),
        click.option("--max-context", type=int, help="Token budget for prompt + answer."),
        click.option("--max-new-tokens", type=int, help="Longest answer in tokens."),
        click.option("--threads", type=int, default=0, envvar="OUTPOST_THREADS", show_default=True,
                     help="CPU threads (0: onnxruntime's default)."),
        click.option("--no-hybrid", is_flag=True, help="Dense retrieval only (no keyword search)."),
        click.option("--no-verify", is_flag=True, help="Skip the bundle's hash and binding checks."),
        click.option("--trust", type=click.Path(), multiple=True, envvar="OUTPOST_TRUSTED_KEYS",
                     help="Trusted public key (file or folder); unsigned or wrongly signed bundles are refused."),
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return f


def _open(
    bundle, top_k, threshold, refusal_p, max_context, max_new_tokens, threads, no_hybrid, no_verify, trust
):  # fmt: skip
    from pathlib import Path

    from runtime.assistant import AskConfig, open_assistant

    config = AskConfig(
        top_k, threshold, max_context, max_new_tokens, threads, not no_hybrid, refusal_p
    )
    return open_assistant(bundle, config, verify=not no_verify, trusted=[Path(t) for t in trust])


def _print_sources(answer) -> None:
    if answer.refused or not answer.citations:
        return
    cited = [c for c in answer.citations if c["cited"]] or answer.citations
    click.echo("\nSources:")
    for c in cited:
        where = c["source"] + (f" > {c['heading']}" if c["heading"] else "")
        click.echo(f"  [{c['n']}] {where}")


def _print_timings(answer) -> None:
    t = answer.timings
    click.echo(
        f"retrieval {answer.retrieval_s * 1000:.0f} ms, prompt {t.prompt_tokens} tokens, "
        f"first token {t.first_token_s:.2f} s, {t.new_tokens} tokens at {t.tokens_per_s:.1f} tokens/s",
        err=True,
    )


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
def ask(bundle, question, as_json, timings, **options):
    """Answer QUESTION (or stdin) from the documents in BUNDLE, with citations."""
    if question is None or question == "-":
        question = "" if sys.stdin.isatty() else sys.stdin.read()
    from runtime.errors import InputError

    if not question.strip():
        raise InputError("the question is empty; pass it as an argument or on stdin")
    assistant = _open(bundle, **options)
    stream = None if as_json else lambda piece: click.echo(piece, nl=False)
    answer = assistant.ask(question, on_text=stream)
    if as_json:
        click.echo(json.dumps(answer.as_dict(), ensure_ascii=False, indent=2))
        return
    click.echo()
    _print_sources(answer)
    if timings:
        _print_timings(answer)


@cli.command()
@click.argument("bundle", type=click.Path(), envvar="OUTPOST_BUNDLE")
@_ask_options
@click.option(
    "--timings", is_flag=True, help="Print time to first token and tokens/s after each answer."
)
def chat(bundle, timings, **options):
    """Ask several questions in a row; earlier turns are kept within the context budget.

    Ctrl-C stops the current answer; Ctrl-D or /quit ends the chat.
    """

    assistant = _open(bundle, **options)
    history: list[dict] = []
    interactive = sys.stdin.isatty()
    while True:
        try:
            question = input("> ") if interactive else sys.stdin.readline()
        except EOFError:
            break
        if not interactive and question == "":
            break
        question = question.strip()
        if question in ("/quit", "/exit"):
            break
        if not question:
            continue
        try:
            answer = assistant.ask(question, history, on_text=lambda p: click.echo(p, nl=False))
        except KeyboardInterrupt:
            click.echo("\n(stopped)", err=True)
            continue
        except OutpostError as e:
            click.echo(f"Error: {e}", err=True)
            continue
        click.echo()
        _print_sources(answer)
        if timings:
            _print_timings(answer)
        history += [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer.text},
        ]


@cli.command()
@click.argument("bundle", type=click.Path(), envvar="OUTPOST_BUNDLE")
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
def info(bundle, as_json):
    """Describe BUNDLE: model, embedder, index, documents and export checks."""
    from runtime.bundle import open_bundle
    from runtime.install import resolve

    m = open_bundle(resolve(bundle)).manifest
    if as_json:
        click.echo(json.dumps(m, indent=2))
        return
    model, emb, idx, checks = m["model"], m["embedder"], m["index"], m["checks"]
    quant = model["quantization"]
    rows = [
        ("bundle", f"{bundle} ({m['size_bytes'] / 1e6:.1f} MB, {len(m['files'])} files, schema {m['schema']})"),
        ("created", f"{m['created']} in {m.get('export_seconds', '?')} s"),
        ("model", f"{model['base']} ({model['parameters'] / 1e6:.0f}M parameters, {quant['precision']}"
                  + (f", {quant.get('algo_config', 'rtn')}" if quant["precision"] != "fp32" else "") + ")"),
        ("adapter", model["adapter"]["path"] if model["adapter"] else "none"),
        ("embedder", f"{emb['id']} ({emb['dim']}-d, {emb['pooling']} pooling, {emb['variant']})"),
        ("index", f"{idx['count']} chunks, usearch {idx['metric']} {idx['dtype']}"),
        ("documents", f"{len(m['sources']['documents'])} ({len(m['sources']['skipped'])} skipped)"),
        ("grounding", f"threshold {m['retrieval']['grounding_threshold']}, top-k {m['retrieval']['top_k']}, "
                      f"declines at p >= {m['generation'].get('refusal_min_p', 0.5)}"),
        ("parity", f"{checks['parity']['token_agreement_pct']}% greedy tokens agree with PyTorch"),
        ("retrieval", ", ".join(f"{k} {v}" for k, v in checks["retrieval"].items() if k.startswith(("dense", "hybrid")))),
    ]  # fmt: skip
    for key, value in rows:
        click.echo(f"{key:>10}  {value}")


@cli.command()
@click.argument("bundle", type=click.Path(), envvar="OUTPOST_BUNDLE")
@click.option("--trust", type=click.Path(), multiple=True, envvar="OUTPOST_TRUSTED_KEYS",
              help="Trusted public key (file or folder): require a valid signature by one of them.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def verify(bundle, trust, as_json):
    """Check every file of BUNDLE against bundle.json (size and sha256), the index binding and,
    with --trust, the signature. Names each missing, changed or unexpected file."""
    from pathlib import Path

    from runtime.bundle import open_bundle
    from runtime.install import resolve
    from runtime.verify import check_binding, check_files, check_signature, load_public_keys

    b = open_bundle(resolve(bundle), check_sizes=False)
    problems = check_files(b.path, b.manifest) + check_binding(b.path, b.manifest)
    if trust:
        if (p := check_signature(b.path, load_public_keys([Path(t) for t in trust]))) is not None:
            problems.append(p)
    if as_json:
        click.echo(json.dumps({"bundle": str(b.path), "ok": not problems, "files": len(b.manifest["files"]),
                               "problems": [p.__dict__ for p in problems]}, indent=2))  # fmt: skip
    else:
        for p in problems:
            click.echo(f"{p.kind:>10}  {p.path}  ({p.detail})")
        if not problems:
            signed = ", signature valid" if trust else ""
            click.echo(f"ok: {len(b.manifest['files'])} files match bundle.json{signed}")
    if problems:
        raise OutpostError(
            f"{len(problems)} problem(s) in {b.path}; copy the bundle again or re-export it"
        )


@cli.command()
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(),
    help="Key path prefix: writes PREFIX.key and PREFIX.pub.",
)
def keygen(out):
    """Make an Ed25519 key pair for signing bundles (`export --sign PREFIX.key`)."""
    from pathlib import Path

    from runtime.verify import generate_keypair

    prefix = Path(out)
    fp = generate_keypair(
        prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    )
    click.echo(f"{prefix}.key (keep it secret), {prefix}.pub (copy to devices); key id {fp}")


@cli.command()
@click.argument("bundle", type=click.Path())
@click.option("--output", "-o", required=True, type=click.Path(), help="Archive file to write.")
def pack(bundle, output):
    """Verify BUNDLE and pack it into one archive for `outpost install`."""
    from pathlib import Path

    from runtime.install import pack as pack_bundle

    size = pack_bundle(Path(bundle), Path(output))
    click.echo(f"{output}: {size / 1e6:.1f} MB")


@cli.command()
@click.argument("archive", type=click.Path())
@click.option("--bundles", required=True, type=click.Path(), envvar="OUTPOST_BUNDLES",
              help="Bundles folder on the device (holds releases/, current, previous).")  # fmt: skip
@click.option("--trust", type=click.Path(), multiple=True, envvar="OUTPOST_TRUSTED_KEYS",
              help="Trusted public key: refuse archives not signed by one of them.")  # fmt: skip
def install(archive, bundles, trust):
    """Extract ARCHIVE safely, verify it, then switch BUNDLES/current to it atomically."""
    from pathlib import Path

    from runtime.install import install as install_archive

    cid = install_archive(Path(archive), Path(bundles), [Path(t) for t in trust])
    click.echo(f"installed {cid[:16]}; {bundles}/current points at it")


@cli.command()
@click.option(
    "--bundles", required=True, type=click.Path(), envvar="OUTPOST_BUNDLES", help="Bundles folder."
)
def rollback(bundles):
    """Point BUNDLES/current back at the previously installed bundle."""
    from pathlib import Path

    from runtime.install import rollback as roll_back

    cid = roll_back(Path(bundles))
    click.echo(f"rolled back; current is {cid[:16]}")


@cli.command("eval")
@click.argument("bundle", type=click.Path(), envvar="OUTPOST_BUNDLE")
@click.option(
    "--questions", "-q", required=True, type=click.Path(), help="JSON-lines questions file."
)
@_ask_options
@click.option(
    "--json", "as_json", is_flag=True, help="Print the report (with every answer) as JSON."
)
def eval_cmd(bundle, questions, as_json, **options):
    """Measure accuracy, refusals, citations and retrieval recall of BUNDLE on QUESTIONS."""
    from runtime.evaluate import evaluate, load_questions
    from runtime.log import counter

    items = load_questions(questions)
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


@cli.command("export")
@click.argument("docs", nargs=-1, required=True, type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(), help="Bundle folder to write.")
@click.option(
    "--base",
    envvar="OUTPOST_BASE",
    help="Base model: a Hugging Face folder, a .gguf file or a hub id "
    "[default: the adapter's base, else embedded:SmolLM2-135M-Instruct].",
)
@click.option(
    "--adapter",
    type=click.Path(),
    help="PEFT adapter (or `outpost train` run folder) to merge before conversion.",
)
@click.option(
    "--precision", type=click.Choice(["int4", "int8", "fp32"]), default="int4", show_default=True
)
@click.option(
    "--quant-algo",
    default="k_quant_mixed",
    show_default=True,
    help="int4/int8 method: default, rtn, k_quant, k_quant_last, k_quant_mixed.",
)
@click.option(
    "--embedder",
    default="embedded:all-MiniLM-L6-v2",
    show_default=True,
    help="sentence-transformers model folder or hub id.",
)
@click.option("--top-k", default=4, show_default=True, help="Passages per question.")
@click.option(
    "--max-context",
    default=1536,
    show_default=True,
    help="Token budget for prompt + answer on the device.",
)
@click.option("--max-new-tokens", default=200, show_default=True, help="Longest answer in tokens.")
@click.option(
    "--chunk-chars", default=900, show_default=True, help="Target chunk size in characters."
)
@click.option(
    "--chunk-overlap", default=150, show_default=True, help="Overlap between chunks of one section."
)
@click.option(
    "--questions",
    type=click.Path(),
    help="Questions file: run `outpost eval` and store the report in bundle.json.",
)
@click.option(
    "--exclude", multiple=True, help="Glob of files to leave out (path or name); repeatable."
)
@click.option(
    "--sign",
    type=click.Path(),
    help="Ed25519 private key (from `outpost keygen`) to sign the bundle.",
)
@click.option("--force", is_flag=True, help="Replace an existing bundle at --out.")
@click.option("--strict", is_flag=True, help="Fail when any file is skipped.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON when done.")
def export_cmd(docs, out, base, adapter, precision, quant_algo, embedder, top_k, max_context,
               max_new_tokens, chunk_chars, chunk_overlap, questions, exclude, sign, force, strict, as_json):  # fmt: skip
    """Build a bundle from DOCS (folders or .md/.txt/.html/.pdf files)."""
    from export.bundle import ExportConfig, build_bundle
    from export.chunk import ChunkConfig
    from export.llm import LlmConfig, base_for

    config = ExportConfig(
        docs=list(docs),
        out=out,
        llm=LlmConfig(
            base=base_for(base, adapter),
            adapter=adapter,
            precision=precision,
            quant_algo=quant_algo,
        ),
        embedder=embedder,
        chunk=ChunkConfig(target_chars=chunk_chars, overlap_chars=chunk_overlap),
        top_k=top_k,
        max_context=max_context,
        max_new_tokens=max_new_tokens,
        questions=questions,
        exclude=tuple(exclude),
        sign=sign,
        force=force,
        strict=strict,
    )
    manifest = build_bundle(config)
    if as_json:
        click.echo(json.dumps(manifest, indent=2))
    else:
        checks = manifest["checks"]
        click.echo(
            f"{out}: {manifest['size_bytes'] / 1e6:.1f} MB, {manifest['index']['count']} chunks, "
            f"parity {checks['parity']['token_agreement_pct']}%, "
            f"threshold {manifest['retrieval']['grounding_threshold']}"
        )


@cli.command(
    "train",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.pass_context
def train_entry(ctx):
    """Train a LoRA/QLoRA adapter (needs the [train] extra)."""
    try:
        from trainer.cli import train_cmd
    except ImportError as e:
        raise OutpostError(
            f"`outpost train` needs the training extra ({e.name} is missing): pip install 'outpost-llm[train]'"
        ) from None
    train_cmd.main(ctx.args, prog_name="outpost train", standalone_mode=False)


def main() -> None:
    cli(prog_name="outpost")


if __name__ == "__main__":
    main()
