"""Build-side commands: `outpost export`, `keygen`, `pack` and `kit`.

They join the `outpost` command through the `outpost.commands` entry points (pyproject.toml);
this module imports only click, so listing them costs nothing, and each command imports its
stage when it runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("export")
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
@click.option(
    "--embedder-precision",
    type=click.Choice(["fp32", "int8"]),
    default="fp32",
    show_default=True,
    help="int8: 1.5x faster, 65 MB less memory; kept only if it retrieves as fp32 does on DOCS.",
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
def export_cmd(docs, out, base, adapter, precision, quant_algo, embedder, embedder_precision, top_k, max_context,
               max_new_tokens, chunk_chars, chunk_overlap, questions, exclude, sign, force, strict, as_json):  # fmt: skip
    """Build a bundle from DOCS (folders or .md/.txt/.html/.pdf/.docx files)."""
    from export.libraries import require_extra

    require_extra("export", "export")
    from export.base import base_for
    from export.bundle import ExportConfig, build_bundle
    from export.chunk import ChunkConfig
    from export.llm import LlmConfig

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
        embedder_precision=embedder_precision,
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
        click.echo(json.dumps(manifest.to_dict(), indent=2))
    else:
        click.echo(
            f"{out}: {manifest.size_bytes / 1e6:.1f} MB, {manifest.index.count} chunks, "
            f"parity {manifest.checks['parity']['token_agreement_pct']}%, "
            f"threshold {manifest.retrieval.grounding_threshold}"
        )


@click.command()
@click.option("--out", "-o", required=True, type=click.Path(),
              help="Key path prefix: writes PREFIX.key and PREFIX.pub.")  # fmt: skip
def keygen(out):
    """Make an Ed25519 key pair for signing bundles (`export --sign PREFIX.key`)."""
    from export.sign import generate_keypair

    prefix = Path(out)
    fp = generate_keypair(
        prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    )
    click.echo(f"{prefix}.key (keep it secret), {prefix}.pub (copy to devices); key id {fp}")


@click.command()
@click.argument("bundle", type=click.Path())
@click.option("--output", "-o", required=True, type=click.Path(), help="Archive file to write.")
def pack(bundle, output):
    """Verify every file of BUNDLE and pack it into one archive for `outpost install`."""
    from export.pack import pack as pack_bundle

    size = pack_bundle(Path(bundle), Path(output))
    click.echo(f"{output}: {size / 1e6:.1f} MB")


@click.command()
@click.option("--out", "-o", required=True, type=click.Path(), help="Kit folder to write.")
@click.option(
    "--platform",
    "platform_tag",
    default="manylinux_2_28_x86_64",
    show_default=True,
    help="The device's platform: manylinux_2_28_x86_64 or manylinux_2_28_aarch64 (2_N: its glibc 2.N).",
)
@click.option(
    "--python",
    "python_version",
    default="3.11",
    show_default=True,
    help="The device's Python (3.11-3.13).",
)
@click.option("--bundle", type=click.Path(), help="Bundle to put in the kit (packed and verified).")
@click.option(
    "--trust",
    type=click.Path(),
    help="Public key the device trusts; the bundle must be signed by it.",
)
@click.option(
    "--question",
    default="What do these manuals cover?",
    show_default=True,
    help="The question install.sh asks as its check.",
)
@click.option("--full", is_flag=True, help="Keep every dependency pip resolves (no pruning).")
@click.option("--force", is_flag=True, help="Replace an existing kit at --out.")
@click.option("--json", "as_json", is_flag=True, help="Print kit.json when done.")
def kit(out, platform_tag, python_version, bundle, trust, question, full, force, as_json):
    """Make an offline install kit for a device: wheels for its platform, install.sh, the bundle."""
    from export.kit import KitConfig, build_kit

    manifest = build_kit(
        KitConfig(out, platform_tag, python_version, bundle, trust, question, full, force)
    )
    if as_json:
        click.echo(json.dumps(manifest, indent=2))
    else:
        click.echo(f"{out}: {len(manifest['wheels'])} wheels, {manifest['wheels_bytes'] / 1e6:.1f} MB; "
                   f"on the device: sh {out}/install.sh [PREFIX]")  # fmt: skip
