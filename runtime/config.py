"""What the device commands take: `AskConfig` (ask, chat, eval), `EvalConfig` (eval's own),
`ServeConfig` (serve, holding the `AskConfig` each release answers with), `VerifyConfig`,
`InstallConfig` and `RollbackConfig`.

Each setting is declared once, as a field (runtime/settings.py): the command-line options,
their `OUTPOST_*` variables and the README's option tables are made from these fields. This
module imports nothing heavy, so `outpost --help` stays instant.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from outpost.runtime.errors import UsageError
from outpost.runtime.settings import nested, setting

READERS = ("windows", "chunks")
# --allow-host: a DNS name or IPv4 address, or an IPv6 address in brackets; an optional :PORT
_HOST_NAME = re.compile(r"(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
LANGUAGES = ("en", "de", "fr", "es", "nb", "nl")
# One variable for every command's trusted keys: one device, one setting (docs/decisions.md).
TRUST_VARIABLE = "OUTPOST_TRUSTED_KEYS"
DEFAULT_KEEP = 3  # releases `install` keeps on the device: current, previous and one more


def trusted_keys(help: str) -> Any:
    """A `--trust` setting: repeatable public-key files or folders, read from
    OUTPOST_TRUSTED_KEYS when not given."""
    return setting([], help, path=True, multiple=True, env=TRUST_VARIABLE)


@dataclass(kw_only=True)
class AskConfig:
    """How `ask`, `chat` and `eval` answer; each field is a command-line option
    (runtime/settings.py). None: the bundle's own setting."""

    top_k: int | None = setting(None, "Passages given to the model (default: the bundle's).")
    threshold: float | None = setting(None, "Grounding threshold (default: calibrated at export).")
    refusal_p: float | None = setting(
        None,
        "Decline only when the model's probability of declining reaches this (default: the "
        "bundle's).",
    )
    max_context: int | None = setting(None, "Token budget for prompt + answer.")
    max_new_tokens: int | None = setting(None, "Longest answer in tokens.")
    draft_tokens: int = setting(
        4,
        "Speculative decoding: up to this many tokens copied from the passages as a guess, "
        "checked in one pass (0: a one-token guess only). The answer is the same token for "
        "token at any value; a larger one is faster where answers copy the manuals "
        "(docs/benchmarks.md).",
        low=0,
        high=16,
    )
    threads: int = setting(0, "CPU threads (0: onnxruntime's default).")
    adapter: str | None = setting(
        None, "Answer with this adapter of the bundle (`outpost info` lists them) [default: base]."
    )
    hybrid: bool = setting(True, "Keyword search fused with the dense search (off: dense only).")
    rerank: bool = setting(
        True, "Order the best lines with the bundle's learned ranker (off: by features alone)."
    )
    verify: bool = setting(True, "Check the bundle's hashes and bindings before answering.")
    trust: list[str] = trusted_keys(
        "Trusted public key: unsigned or wrongly signed bundles are refused "
        "(file or folder of .pub files)."
    )
    reader: str = setting(
        "windows",
        "What the model reads: the best sentences with their neighbours, or whole passages.",
        choices=READERS,
    )
    min_evidence: float | None = setting(
        None,
        "Decline when the passages read cover less of the question than this (default: "
        "the bundle's).",
        low=0,
        high=1,
    )
    support: bool = setting(
        True,
        "Check the answer's facts against the passages and copy "
        "numbers only from them (off: answers shown unchecked).",
    )

    def check(self) -> None:
        if self.top_k is not None and self.top_k < 1:
            raise UsageError("--top-k must be at least 1")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise UsageError("--max-new-tokens must be at least 1")
        if self.max_context is not None and self.max_context < 64:
            raise UsageError("--max-context must be at least 64 tokens")
        if self.threads < 0:
            raise UsageError("--threads must be 0 (all cores) or more")
        if self.refusal_p is not None and not 0 <= self.refusal_p <= 1:
            raise UsageError("--refusal-p must be between 0 and 1 (0: the model declines freely)")
        if self.min_evidence is not None and not 0 <= self.min_evidence <= 1:
            raise UsageError("--min-evidence must be between 0 and 1 (0: never decline for it)")
        if self.reader not in READERS:
            raise UsageError(f"--reader must be one of {', '.join(READERS)}")


def is_loopback(host: str) -> bool:
    """Whether serve's --host is reachable from this device only: localhost, 127.0.0.0/8, ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: whatever it resolves to, not known to be loopback


@dataclass(kw_only=True)
class ServeConfig:
    """How `outpost serve` runs; each field but `source` is an option, and `ask` gives serve
    its --threads, --adapter, --verify and --trust."""

    source: str  # a bundle folder, or a bundles folder whose `current` is followed
    host: str = setting(
        "127.0.0.1", "Address to listen on (0.0.0.0: every interface; use with --api-key)."
    )
    port: int = setting(8080, "TCP port (0: any free one).")
    api_key: str | None = setting(
        None, "Require 'Authorization: Bearer KEY' on /v1/ and /metrics.", secret=True
    )
    allow_host: list[str] = setting(
        [],
        "Also answer requests whose Host (and Origin) names this: NAME (any port) or NAME:PORT; "
        "'*': any. Otherwise only the bound address and localhost are answered (421/403); "
        "no check with --api-key.",
        multiple=True,
    )
    max_concurrent: int = setting(1, "Questions answered at once (each uses every --threads core).")
    queue: int = setting(
        8, "Questions that may wait for a slot; more are answered 429 with Retry-After."
    )
    queue_timeout: float = setting(60.0, "Seconds a question may wait for a slot before a 503.")
    request_timeout: float = setting(
        120.0, "Seconds a question may take in all; its answer then stops."
    )
    max_body: int = setting(64 * 1024, "Largest request body in bytes.")
    idle_reset: int = setting(90, "Seconds before the kiosk page clears the conversation.")
    lang: str = setting(
        "en", "Kiosk page language (a page can ask for another with ?lang=).", choices=LANGUAGES
    )
    log_questions: bool = setting(False, "Put the question text in the access log.")
    metrics: bool = setting(
        True,
        "Prometheus metrics at /metrics (docs/serving.md); on a --host other than loopback only "
        "with --api-key, for callers that send it.",
    )
    feedback: bool = setting(
        True,
        "Record each question, its answer and the reader's verdict in the field log (the kiosk "
        "asks after each answer; POST /v1/feedback); docs/feedback.md.",
    )
    feedback_dir: str | None = setting(
        None,
        "Folder of the field log [default: BUNDLES/feedback for a bundles folder, else "
        "$XDG_STATE_HOME/outpost/feedback].",
        path=True,
    )
    feedback_max_mb: int = setting(
        16, "Largest field log in MiB; past it the oldest entries go first.", low=1, high=4096
    )
    watch: float = setting(
        2.0,
        "Seconds between looks at a bundles folder's `current` for a new release.",
        low=0.1,
        high=3600,
    )
    max_connections: int = setting(
        512, "Open connections in all; more are closed at once.", low=1, high=65536
    )
    max_client_connections: int = setting(
        32, "Open connections from one address; more are closed at once.", low=1, high=65536
    )
    operator_connections: int = setting(
        16,
        "Of --max-connections, kept for 127.0.0.1 and ::1 (the device's own operator): other "
        "addresses are closed at once when only these are left.",
        low=0,
        high=65536,
    )
    head_timeout: float = setting(
        10.0,
        "Seconds a client may take to send a request's headers; then it is disconnected.",
        low=0.1,
        high=3600,
    )
    body_timeout: float = setting(
        20.0,
        "Seconds a client may take to send a request's body once its headers are in; then it "
        "gets a 408 and is disconnected.",
        low=0.1,
        high=3600,
    )
    # How each release answers; serve takes five of ask's settings, worded for serving.
    ask: AskConfig = nested(
        AskConfig,
        "threads",
        "adapter",
        "verify",
        "trust",
        "draft_tokens",
        help={
            "adapter": "Adapter for requests that name no `model`, and the kiosk's (`outpost "
            "info` lists them) [default: base].",
            "verify": "Check each release's hashes and bindings before serving it.",
            "trust": "Trusted public key: unsigned or wrongly signed releases "
            "are refused (file or folder of .pub files).",
        },
    )

    def check(self) -> None:
        if not 1 <= self.max_concurrent <= 64:
            raise UsageError("--max-concurrent must be between 1 and 64")
        if not 0 <= self.queue <= 1024:
            raise UsageError("--queue must be between 0 and 1024")
        if not 0 <= self.port <= 65535:
            raise UsageError("--port must be between 0 and 65535")
        if self.queue_timeout <= 0 or self.request_timeout <= 0:
            raise UsageError("--queue-timeout and --request-timeout must be more than 0 seconds")
        if self.max_body < 1024:
            raise UsageError("--max-body must be at least 1024 bytes")
        if self.idle_reset < 5:
            raise UsageError("--idle-reset must be at least 5 seconds")
        if self.lang not in LANGUAGES:
            raise UsageError(f"--lang must be one of {', '.join(LANGUAGES)}")
        if not 1 <= self.max_client_connections <= self.max_connections:
            raise UsageError("--max-client-connections must be between 1 and --max-connections")
        if self.head_timeout <= 0 or self.body_timeout <= 0:
            raise UsageError("--head-timeout and --body-timeout must be more than 0 seconds")
        if not 0 <= self.operator_connections < self.max_connections:
            raise UsageError("--operator-connections must be between 0 and --max-connections - 1")
        for name in self.allow_host:
            if name != "*" and not _HOST_NAME.fullmatch(name):
                raise UsageError(
                    f"--allow-host {name!r}: give a host name or address, NAME or NAME:PORT "
                    "(no scheme, no path), or '*'"
                )
        if self.api_key is not None and len(self.api_key) < 8:
            raise UsageError("--api-key must be at least 8 characters")

    def metrics_refusal(self) -> str | None:
        """Why /metrics is not served, naming the flag to change; None when it is (with an
        --api-key, to callers that send it: app.py's `Guard` asks for the key)."""
        if not self.metrics:
            return "metrics are off: the server runs with --no-metrics"
        if self.api_key is None and not is_loopback(self.host):
            return (
                f"metrics are served on --host {self.host} only with --api-key, to callers that "
                "send 'Authorization: Bearer KEY'"
            )
        return None


@dataclass(kw_only=True)
class RecordConfig:
    """What `ask` and `chat` take to record in the field log."""

    log: str | None = setting(
        None,
        "Record each question and answer in the field log in this folder (docs/feedback.md).",
        path=True,
    )


@dataclass(kw_only=True)
class FeedbackConfig:
    """Which field log `outpost feedback export`, `info`, `rate` and `wipe` read."""

    bundles: str | None = setting(
        None, "Bundles folder on the device: its log is BUNDLES/feedback.", path=True
    )
    log: str | None = setting(
        None, "The field log's folder (serve --feedback-dir, ask --log).", path=True
    )

    def folder(self) -> str:
        if (self.bundles is None) == (self.log is None):
            raise UsageError("give the field log as --bundles DIR or --log DIR (one of them)")
        from outpost.runtime.field.log import outside_bundles

        given = self.log if self.log is not None else f"{self.bundles}/feedback"
        return str(outside_bundles(given))


@dataclass(kw_only=True)
class EvalConfig:
    """What `outpost eval` takes besides `AskConfig`."""

    questions: str = setting("", "JSON-lines questions file.", alias="-q", path=True, required=True)


@dataclass(kw_only=True)
class VerifyConfig:
    """What `outpost verify` takes (besides --json, the output's form)."""

    trust: list[str] = trusted_keys(
        "Trusted public key: require a valid signature by one of them (file or folder of .pub "
        "files)."
    )


@dataclass(kw_only=True)
class InstallConfig:
    """What `outpost install` takes."""

    bundles: str = setting(
        "",
        "Bundles folder on the device (holds releases/, current, previous).",
        path=True,
        required=True,
    )
    trust: list[str] = trusted_keys(
        "Trusted public key: refuse archives not signed by one of them (file or folder of .pub "
        "files)."
    )
    keep: int = setting(
        DEFAULT_KEEP,
        "Releases kept on the device (current and previous always; 0: keep all).",
        low=0,
    )


@dataclass(kw_only=True)
class RollbackConfig:
    """What `outpost rollback` takes."""

    bundles: str = setting("", "Bundles folder.", path=True, required=True)
    trust: list[str] = trusted_keys(
        "Trusted public key: refuse to roll back to a bundle not signed by one of them (file or "
        "folder of .pub files)."
    )
