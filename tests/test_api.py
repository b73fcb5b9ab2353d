"""The HTTP API in process: the real app (routers, Guard, error handlers) over a real bundle,
driven through httpx's ASGI transport, without starting uvicorn. The live-server tests
(tests/test_serve.py) cover what needs sockets: disconnects, slow clients, release switches."""

import asyncio
import json

import httpx
import pytest

from outpost.runtime.config import AskConfig, ServeConfig
from outpost.runtime.serve.app import create_app
from outpost.runtime.serve.releases import Releases


def _app(source, loaded: bool = True, **settings):
    events = []
    config = ServeConfig(source=str(source), ask=AskConfig(threads=2), **settings)
    releases = Releases(config, events.append)
    if loaded:
        releases.refresh()  # what the app's release thread does first (not run in process)
        assert releases.current is not None, events
    return create_app(config, releases, say=events.append), events


def _call(app, *requests):
    """Send each (method, path, json) to the app; the responses, in order."""

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://outpost") as client:
            return [await client.request(m, p, json=body, timeout=120) for m, p, body in requests]

    return asyncio.run(run())


def ask(question: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": question}], **extra}


@pytest.mark.slow
def test_api_in_process_answers_streams_and_describes_itself(tiny_bundle):
    app, events = _app(tiny_bundle)
    health, models, answer, stream, passage = _call(
        app,
        ("GET", "/health", None),
        ("GET", "/v1/models", None),
        (
            "POST",
            "/v1/chat/completions",
            ask("What is the maximum pressure of the press?", max_tokens=8),
        ),
        (
            "POST",
            "/v1/chat/completions",
            ask("What is the maximum pressure of the press?", max_tokens=8, stream=True),
        ),
        ("GET", "/v1/passages/0", None),
    )
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert len(health.json()["bundle"]) == 64
    model = models.json()["data"][0]["id"]
    assert model.startswith("outpost-")

    assert answer.status_code == 200 and answer.headers["x-request-id"].startswith("req-")
    body = answer.json()
    assert body["model"] == model and body["object"] == "chat.completion"
    field = body["outpost"]
    assert set(field) == {
        "declined",
        "declined_by",
        "unknown_names",
        "answer_mode",
        "evidence",
        "support",
        "citations",
        "bundle",
    }
    if not field["declined"]:
        assert field["evidence"] and field["citations"]

    chunks = [line[6:] for line in stream.text.splitlines() if line.startswith("data: ")]
    assert chunks[-1] == "[DONE]"
    parsed = [json.loads(c) for c in chunks[:-1]]
    assert parsed[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert parsed[-1]["outpost"]["declined"] == field["declined"]  # one serialiser, both ways
    quotes = [c["outpost"]["quote"] for c in parsed if "quote" in c.get("outpost", {})]
    if not field["declined"]:
        assert quotes and quotes[0]["text"] == field["evidence"][0]["text"]  # the quote came first

    assert passage.status_code == 200 and set(passage.json()) == {"id", "source", "heading", "text"}
    logged = [e for e in events if e.get("event") == "request"]
    assert [e["status"] for e in logged] == [200, 200, 200, 200]  # /health is not logged


@pytest.mark.slow
def test_api_in_process_errors_are_openai_shaped(tiny_bundle):
    app, _ = _app(tiny_bundle, api_key="secret-key-1")
    unknown, wrong_method, no_key = _call(
        app,
        ("GET", "/nothing", None),
        ("POST", "/health", None),
        ("POST", "/v1/chat/completions", ask("pressure?")),
    )
    for r, status in ((unknown, 404), (wrong_method, 405), (no_key, 401)):
        assert r.status_code == status and r.json()["error"]["code"] == status

    app, _ = _app(tiny_bundle)
    bad_role, empty, huge_id = _call(
        app,
        ("POST", "/v1/chat/completions", {"messages": [{"role": "robot", "content": "hi"}]}),
        ("POST", "/v1/chat/completions", ask("   ")),
        ("GET", f"/v1/passages/{2**70}", None),
    )
    assert bad_role.status_code == 400 and "role" in bad_role.json()["error"]["message"]
    assert empty.status_code == 400 and "no text" in empty.json()["error"]["message"]
    assert huge_id.status_code == 404


def test_api_in_process_health_while_loading_is_llama_cpp_shaped(tmp_path):
    (tmp_path / "bundle").mkdir()  # nothing loaded yet: the release thread has not run
    app, _ = _app(tmp_path / "bundle", loaded=False)
    health, chat = _call(
        app, ("GET", "/health", None), ("POST", "/v1/chat/completions", ask("why?"))
    )
    assert health.status_code == 503 and health.headers["retry-after"]
    assert health.json()["error"] == {
        "code": 503,
        "message": "Loading model",
        "type": "unavailable_error",
    }
    assert chat.status_code == 503 and "loading" in chat.json()["error"]["message"]


def test_feedback_is_taken_only_for_answers_this_server_gave(tmp_path):
    from outpost.runtime.field.entry import new_id
    from outpost.runtime.field.log import FieldLog

    (tmp_path / "bundle").mkdir()
    log = tmp_path / "log"
    app, _ = _app(tmp_path / "bundle", loaded=False, feedback_dir=str(log))
    given = new_id()
    app.state.server.keep({"v": 1, "kind": "answer", "id": given, "question": "why?"})
    ok, again, unknown, malformed, extra, long_note = _call(
        app,
        ("POST", "/v1/feedback", {"id": given, "helpful": False}),
        ("POST", "/v1/feedback", {"id": given, "helpful": True, "note": "found it below"}),
        ("POST", "/v1/feedback", {"id": new_id(), "helpful": True}),
        ("POST", "/v1/feedback", {"id": given, "helpful": "yes please"}),
        ("POST", "/v1/feedback", {"id": given, "helpful": True, "stars": 5}),
        ("POST", "/v1/feedback", {"id": given, "helpful": True, "note": "x" * 501}),
    )
    assert ok.status_code == again.status_code == 200 and ok.json()["recorded"] is True
    assert (
        unknown.status_code == 404 and "no answer chatcmpl-" in unknown.json()["error"]["message"]
    )
    for refused in (malformed, extra, long_note):
        assert refused.status_code == 400 and refused.json()["error"]["message"]
    verdicts = [
        (e["helpful"], e["note"]) for e in FieldLog(log).entries() if e["kind"] == "verdict"
    ]
    assert verdicts == [(False, None), (True, "found it below")]  # the later one is kept too

    off, _ = _app(
        tmp_path / "bundle", loaded=False, feedback=False, feedback_dir=str(tmp_path / "x")
    )
    (refused,) = _call(off, ("POST", "/v1/feedback", {"id": given, "helpful": True}))
    assert refused.status_code == 404 and "--no-feedback" in refused.json()["error"]["message"]
    assert not (tmp_path / "x").exists()  # nothing made for a log that is off


def test_a_field_log_inside_a_bundle_stops_serve_at_start(tmp_path):
    from outpost.runtime.field.log import FieldLogError

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "bundle.json").write_text("{}")
    with pytest.raises(FieldLogError, match="inside the bundle"):
        _app(bundle, loaded=False, feedback_dir=str(bundle / "feedback"))
