"""Build-side commands: `outpost export`, `keygen`, `pack` and `kit`.

They join the `outpost` command through the `outpost.commands` entry points (pyproject.toml);
this module imports only click and the commands' settings (export/config.py), so listing them
costs nothing, and each command imports its
stage when it runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from outpost.export.config import ChunkConfig, ExportConfig, KitConfig, LlmConfig
from outpost.runtime import settings

EXPORT_ENV = "OUTPOST_EXPORT_"  # prefix of the export options' environment variables
KIT_ENV = "OUTPOST_KIT_"


@click.command("export")
@click.argument("docs", nargs=-1, required=True, type=click.Path())
@settings.options(ExportConfig, LlmConfig, ChunkConfig, prefix=EXPORT_ENV)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON when done.")
def export_cmd(docs, as_json, **options):
    """Build a bundle from DOCS (folders or .md/.txt/.html/.pdf/.docx/.odt/.epub files)."""
    from outpost.export.libraries import require_extra

    require_extra("export", "export")
    from outpost.export.bundle import build_bundle
    from outpost.export.llm.base import base_for
    from outpost.runtime.bundle.manifest import conversion_in_words

    llm = settings.build(LlmConfig, options)
    llm.base = base_for(llm.base, llm.merged or next(iter(llm.switchable.values()), None))
    config = settings.build(
        ExportConfig, options, docs=list(docs), llm=llm, chunk=settings.build(ChunkConfig, options)
    )
    out = config.out
    manifest = build_bundle(config)
    if as_json:
        click.echo(json.dumps(manifest.to_dict(), indent=2))
    else:
        click.echo(
            f"{out}: {manifest.size_bytes / 1e6:.1f} MB, {manifest.index.count} chunks, "
            f"threshold {manifest.retrieval.grounding_threshold}"
            + "".join(f", adapter {name}" for name in manifest.model.adapters)
        )
        click.echo(f"conversion: {conversion_in_words(manifest.checks['conversion'])}")
        if update := manifest.build.get("update"):
            click.echo(
                f"update: {update['documents_kept']} documents kept, {update['documents_read']} "
                f"read, {update['documents_removed']} removed; {update['vectors_kept']} vectors "
                f"kept, {update['vectors_embedded']} embedded"
            )


@click.command()
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(),
    help="Key path prefix: writes PREFIX.key and PREFIX.pub.",
)
def keygen(out):
    """Make an Ed25519 key pair for signing bundles (`export --sign PREFIX.key`)."""
    from outpost.export.ship.sign import generate_keypair, key_paths

    prefix = Path(out)
    fp = generate_keypair(*key_paths(prefix))
    click.echo(f"{prefix}.key (keep it secret), {prefix}.pub (copy to devices); key id {fp}")


@click.command()
@click.argument("bundle", type=click.Path())
@click.option("--output", "-o", required=True, type=click.Path(), help="Archive file to write.")
def pack(bundle, output):
    """Verify every file of BUNDLE and pack it into one archive for `outpost install`."""
    from outpost.export.ship.pack import pack as pack_bundle

    size = pack_bundle(Path(bundle), Path(output))
    click.echo(f"{output}: {size / 1e6:.1f} MB")


@click.command()
@settings.options(KitConfig, prefix=KIT_ENV)
@click.option("--json", "as_json", is_flag=True, help="Print kit.json when done.")
def kit(as_json, **options):
    """Make an offline install kit for a device: wheels for its platform, install.sh, the bundle."""
    from outpost.export.ship.kit import build_kit

    config = settings.build(KitConfig, options)
    out = config.out
    manifest = build_kit(config)
    if as_json:
        click.echo(json.dumps(manifest, indent=2))
    else:
        click.echo(
            f"{out}: {len(manifest['wheels'])} wheels, {manifest['wheels_bytes'] / 1e6:.1f} MB; "
            f"on the device: sh {out}/install.sh [PREFIX]"
        )


@click.command("report")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option(
    "--bundle",
    type=click.Path(),
    help="Group questions by meaning with this bundle's embedder (otherwise by shared words).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--html", "html_out", type=click.Path(), help="Write the report as one HTML page to PATH."
)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="CPU threads for --bundle's embedder (0: onnxruntime's default).",
)
def feedback_report(
    files: tuple[str, ...], bundle: str | None, as_json: bool, html_out: str | None, threads: int
) -> None:
    """What the manuals did not answer, and the answer quality per document and per week, from
    FILES (`outpost feedback export` files of one or more devices)."""
    from outpost.export.field.html import as_html
    from outpost.export.field.report import as_text, build_report
    from outpost.export.field.similar import open_meaning
    from outpost.runtime.errors import OutpostError, UsageError, one_line
    from outpost.runtime.field import exchange
    from outpost.runtime.files import write_atomic

    if as_json and html_out:
        raise click.UsageError("give --json or --html, not both")
    if html_out and any(Path(html_out).resolve() == Path(f).resolve() for f in files):
        raise click.UsageError(f"--html {html_out} is one of the FILES; name a new file")
    try:
        rows, counts = exchange.merge(files)
        embed, languages = open_meaning(bundle, threads) if bundle else (None, None)
        report = build_report(rows, counts, embed, languages)
    except OutpostError as e:  # one `Error: …` line, also where no outpost group runs it
        message = one_line(str(e))
        if isinstance(e, UsageError):
            raise click.UsageError(message) from None
        raise click.ClickException(message) from None
    if as_json:
        click.echo(json.dumps(report, indent=2))
    elif html_out:
        try:
            write_atomic(Path(html_out), as_html(report))
        except OSError as e:
            raise click.ClickException(
                f"cannot write {html_out} ({e.strerror}); name a file in a folder you can write"
            ) from None
        click.echo(
            f"{html_out}: {report['totals']['answers']} answers, "
            f"{len(report['unanswered'])} groups of unanswered questions",
            err=True,
        )
    else:
        click.echo(as_text(report), nl=False)
