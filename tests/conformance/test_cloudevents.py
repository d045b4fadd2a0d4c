"""CloudEvents conformance: the cloudevents/conformance corpus, loaded from shared/ at test time.

* format-tests JSON files: every valid event decodes to its golden sample, every invalid one is
  rejected (directly and as a structured-mode HTTP body, with status 400).
* YAML samples (CE 1.0 and 0.3): each is sent as the conformance tool would (binary or structured
  per ``Mode``) over a real loopback HTTP server and must decode to the same attributes and data.
* Gherkin HTTP-binding scenarios: the raw HTTP requests in the .feature file are written to that
  server byte for byte, and the parsed attributes and data are compared with the scenario tables.
"""

from __future__ import annotations

import json
import re
import socket
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support import SHARED, free_port, wait_for_port
from wisp.eventing.cloudevents import (
    CloudEvent,
    CloudEventError,
    InvalidEventError,
    canonical_string,
    from_dict,
    from_http,
    is_json_content_type,
    parse_timestamp,
    to_binary,
    to_json,
    to_structured,
)

CORPUS = SHARED / "conformance" / "cloudevents"
FORMAT_DIR = CORPUS / "format-tests-branch" / "format" / "json"
pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"conformance corpus missing at {CORPUS}")

# -- golden sample events (format/README.md prose, expressed in code as the README asks) ---------

_MINIMAL: dict[str, Any] = {
    "specversion": "1.0",
    "id": "minimal",
    "type": "io.cloudevents.test",
    "source": "https://cloudevents.io",
}
_T = datetime(2018, 4, 5, 17, 31, tzinfo=UTC)
GOLDEN: dict[str, tuple[dict[str, Any], Any]] = {
    "minimal": (_MINIMAL, None),
    "minimalWithTime": ({**_MINIMAL, "id": "minimalWithTime", "time": _T}, None),
    "minimalWithRelativeSource": (
        {**_MINIMAL, "id": "minimalWithRelativeSource", "source": "#fragment"},
        None,
    ),
    "allCore": (
        {
            **_MINIMAL,
            "id": "allCore",
            "datacontenttype": "text/plain",
            "dataschema": "https://cloudevents.io/dataschema",
            "subject": "tests",
            "time": _T,
        },
        None,
    ),
    # README erratum: it names this event's id "simpleData" but valid-events.json says "simpleTextData".
    "simpleTextData": ({**_MINIMAL, "id": "simpleTextData", "datacontenttype": "text/plain"}, "Simple text"),
    "allExtensionTypes": (
        {
            **_MINIMAL,
            "id": "allExtensionTypes",
            "extinteger": 10,
            "extboolean": True,
            "extstring": "text",
            "extbinary": bytes([77, 97]),
            "exttimestamp": datetime(2023, 3, 31, 15, 12, tzinfo=UTC),
            "exturi": "https://cloudevents.io",
            "exturiref": "//authority/path",
        },
        None,
    ),
}


def _load_tests(name: str) -> list[dict[str, Any]]:
    path = FORMAT_DIR / name
    if not path.is_file():
        return []
    return list(json.loads(path.read_text(encoding="utf-8-sig"))["tests"])


def _same_attribute(name: str, got: Any, want: Any) -> bool:
    """CloudEvent-relevant equality: timestamps by instant, everything else by canonical string."""
    if isinstance(want, datetime):
        return parse_timestamp(str(got)) == want
    return canonical_string(got) == canonical_string(want)


def _assert_matches_golden(event: CloudEvent, sample_id: str) -> None:
    attrs, data = GOLDEN[sample_id]
    assert set(event.attributes) == set(attrs)
    for name, want in attrs.items():
        assert _same_attribute(name, event.attributes[name], want), name
    assert event.data == data


@pytest.mark.parametrize("case", _load_tests("valid-events.json"), ids=lambda c: c["id"])
def test_valid_json_events_decode_to_their_golden_sample(case: dict[str, Any]) -> None:
    event = from_dict(case["event"])
    _assert_matches_golden(event, case["sampleId"])
    headers = {"Content-Type": "application/cloudevents+json"}
    _assert_matches_golden(from_http(headers, json.dumps(case["event"]).encode()), case["sampleId"])


@pytest.mark.parametrize("case", _load_tests("invalid-events.json"), ids=lambda c: c["id"])
def test_invalid_json_events_are_rejected_with_400(case: dict[str, Any]) -> None:
    with pytest.raises(CloudEventError) as caught:
        from_dict(case["event"])
    assert caught.value.status == 400
    with pytest.raises(CloudEventError) as caught:
        from_http({"content-type": "application/cloudevents+json"}, json.dumps(case["event"]).encode())
    assert caught.value.status == 400


def test_format_corpus_is_present_and_complete() -> None:
    assert len(_load_tests("valid-events.json")) >= 10
    assert len(_load_tests("invalid-events.json")) >= 25


# -- a real loopback receiver ---------------------------------------------------------------------


async def _receive(request: Request) -> JSONResponse:
    try:
        event = from_http(request.headers.items(), await request.body())
    except CloudEventError as e:
        return JSONResponse({"error": e.message, "attribute": e.attribute}, status_code=e.status)
    body = event.data_bytes()
    return JSONResponse(
        {
            "attributes": dict(event.attributes),
            "body": body.decode("utf-8", "replace"),
            "json": event.json() if event.data_is_json() and body else None,
        },
        status_code=202,
    )


@pytest.fixture(scope="module")
def receiver() -> Iterator[int]:
    """A uvicorn server (its own thread and loop) that decodes whatever is POSTed to it."""
    port = free_port()
    app = Starlette(routes=[Route("/{path:path}", _receive, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _exchange(port: int, raw: bytes) -> tuple[int, dict[str, Any]]:
    """Write a raw HTTP/1.1 request and read the whole response (the server closes the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def _request(headers: dict[str, str], body: bytes) -> bytes:
    lines = ["POST / HTTP/1.1", "Host: example.com", "Connection: close", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# -- YAML sample events --------------------------------------------------------------------------


def _yaml_docs() -> list[Any]:
    docs = []
    for path in sorted((CORPUS / "yaml").rglob("*.yaml")):
        for index, doc in enumerate(yaml.load_all(path.read_text(), Loader=yaml.BaseLoader)):
            if doc:
                docs.append(pytest.param(doc, id=f"{path.relative_to(CORPUS / 'yaml')}#{index}"))
    return docs


def _yaml_attributes(doc: dict[str, Any]) -> dict[str, str]:
    attrs = {k: v for k, v in doc["ContextAttributes"].items() if k != "Extensions"}
    attrs.update(doc["ContextAttributes"].get("Extensions") or {})
    return attrs


def _yaml_request(doc: dict[str, Any]) -> bytes:
    """Encode a sample as the conformance tool does: binary unless ``Mode: structured``."""
    attrs = _yaml_attributes(doc)
    data = doc.get("Data", "")
    transport = dict(doc.get("TransportExtensions") or {})
    ctype = attrs.get("datacontenttype")
    if doc.get("Mode") == "structured":
        envelope: dict[str, Any] = dict(attrs)
        envelope["data"] = json.loads(data) if is_json_content_type(ctype) else data
        headers = {**transport, "Content-Type": "application/cloudevents+json"}
        return _request(headers, json.dumps(envelope).encode())
    # ce- values are percent-encoded as a conforming sender must (independently of wisp's encoder).
    headers = {**transport, **{f"ce-{k}": _percent(v) for k, v in attrs.items() if k != "datacontenttype"}}
    if ctype is not None:
        headers["Content-Type"] = ctype
    return _request(headers, data.encode("utf-8"))


def _percent(value: str) -> str:
    return re.sub(r'[^\x21-\x7e]|[%"]', lambda m: "".join(f"%{b:02X}" for b in m[0].encode()), value)


def _forbidden_in_string(value: str) -> bool:
    """Spec §1.3: control characters may not appear in String values (U+000A is the usual culprit)."""
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value)


@pytest.mark.parametrize("doc", _yaml_docs())
def test_yaml_samples_decode_over_http(receiver: int, doc: dict[str, Any]) -> None:
    attrs = _yaml_attributes(doc)
    status, got = _exchange(receiver, _yaml_request(doc))
    bad = sorted(k for k, v in attrs.items() if _forbidden_in_string(v))
    if bad:
        # e.g. v1.yaml's block-scalar extension ends in "\n": the spec forbids it in String values.
        assert status == 400, got
        assert got["attribute"] in bad
        return
    assert status == 202, got
    for name, value in attrs.items():
        assert _same_attribute(name, got["attributes"][name], value), name
    data = doc.get("Data", "")
    if is_json_content_type(attrs.get("datacontenttype")):
        assert got["json"] == json.loads(data)
    else:
        assert got["body"] == data


def test_yaml_corpus_covers_both_spec_versions() -> None:
    versions = {p.values[0]["ContextAttributes"]["specversion"] for p in _yaml_docs()}
    assert versions == {"1.0", "0.3"}


def test_yaml_sample_with_newline_extension_decodes_once_the_value_is_legal() -> None:
    doc = yaml.safe_load((CORPUS / "yaml" / "v1.yaml").read_text().split("---")[0])
    attrs = _yaml_attributes(doc)
    attrs["comexampleextension2"] = attrs["comexampleextension2"].rstrip("\n")
    event = CloudEvent({**attrs, "specversion": "1.0", "time": "2018-04-05T03:56:24Z"}, doc["Data"].encode())
    again = from_http(*to_binary(event))
    assert again.attributes["comexampleextension2"] == '{"othervalue": 5}'
    assert again.json() == {"world": "hello"}
    with pytest.raises(InvalidEventError) as caught:
        CloudEvent(
            {**attrs, "specversion": "1.0", "time": None, "comexampleextension2": '{"othervalue": 5}\n'}
        )
    assert caught.value.attribute == "comexampleextension2"


# -- Gherkin HTTP protocol binding scenarios ----------------------------------------------------


def _feature_cases() -> list[Any]:
    text = (CORPUS / "features" / "http-protocol-binding.feature").read_text()
    cases = []
    for block in text.split("Scenario Outline:")[1:]:
        title = block.splitlines()[0].strip()
        docstrings = [textwrap.dedent(d).strip("\n") for d in re.findall(r'"""\n(.*?)\n\s*"""', block, re.S)]
        request, want_json = docstrings[0], json.loads(docstrings[1])
        table = block.split("Then the attributes are:")[1].split("And the data")[0]
        rows = [
            [c.strip() for c in line.strip().strip("|").split("|")] for line in table.strip().splitlines()
        ]
        examples = block.split("Examples:")[1].strip().splitlines()
        header = [c.strip() for c in examples[0].strip().strip("|").split("|")]
        for line in examples[1:]:
            values = dict(zip(header, [c.strip() for c in line.strip().strip("|").split("|")], strict=True))
            cases.append(
                pytest.param(
                    request,
                    dict(rows[1:]),
                    want_json,
                    values,
                    id=f"{title.split('(')[0].strip()}[{values[header[0]]}]",
                )
            )
    return cases


def _fill(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        template = template.replace(f"<{key}>", value)
    return template


def _raw_http(request_text: str) -> bytes:
    head, _, body = request_text.partition("\n\n")
    lines = [ln for ln in head.splitlines() if not ln.lower().startswith("content-length:")]
    payload = body.encode("utf-8")
    lines += [f"Content-Length: {len(payload)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


@pytest.mark.parametrize(("request_text", "want_attrs", "want_json", "values"), _feature_cases())
def test_http_binding_feature_scenarios(
    receiver: int, request_text: str, want_attrs: dict[str, str], want_json: Any, values: dict[str, str]
) -> None:
    status, got = _exchange(receiver, _raw_http(_fill(request_text, values)))
    assert status == 202, got
    want = {k: _fill(v, values) for k, v in want_attrs.items()}
    assert got["attributes"] == want
    assert got["json"] == want_json


def test_feature_file_yields_every_example() -> None:
    assert len(_feature_cases()) == 4


# -- status codes at a real receiver ------------------------------------------------------------


def test_receiver_answers_415_for_an_unsupported_structured_format(receiver: int) -> None:
    status, got = _exchange(receiver, _request({"Content-Type": "application/cloudevents+avro"}, b"\x00"))
    assert status == 415 and "application/cloudevents+avro" in got["error"]


def test_receiver_answers_400_for_invalid_utf8_in_a_header(receiver: int) -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "%C0%A0"}
    status, got = _exchange(receiver, _request(headers, b""))
    assert (status, got["attribute"]) == (400, "type")


def test_receiver_round_trips_what_wisp_sends(receiver: int) -> None:
    event = CloudEvent.create(
        "com.example.ünïcode", "/s p a c e", {"big": "x" * 70_000}, extensions={"flag": True, "count": -7}
    )
    for encode in (to_binary, to_structured):
        status, got = _exchange(receiver, _request(*encode(event)))
        assert status == 202, got
        assert got["attributes"]["type"] == "com.example.ünïcode"
        assert got["json"] == {"big": "x" * 70_000}
    assert json.loads(to_json(event))["data"] == {"big": "x" * 70_000}
