"""The OpenAPI document (parley/openapi.py): fresh in docs/, a valid description, the same
routes and parameters as a real ``parley run`` app, and real answers that fit it."""

from __future__ import annotations

import ast
import asyncio
import copy
import importlib
import inspect
import json
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator, ValidationError
from openapi_spec_validator import OpenAPIV31SpecValidator
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from contracts.state import ChatState
from parley.openapi import OPENAPI_PATH, document, main, render, served_routes
from parley.process import assemble
from parley.run import run_roles
from parley.runtime import Runtime
from parley.settings import HttpSettings, KafkaSettings, Settings, SourceSettings, StoreSettings
from receiver.role import ReceiverRole
from tests.kit.run_roles import quick_run_roles

DOC_FILE = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
WEBHOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks" / "natterly"
NATTERLY_TOKEN = "DZBHWMV3TJXQZeCZb8HdAqWNP90Kp4"  # the fixtures' own auth_token
SHOP_SECRET = "shop-hmac-secret-7d1e"
API_TOKEN = "api-token-5c0f9e2b7a41d386"
CHAT = "5d2f8c1e-3a4b-4c6d-8e7f-9a0b1c2d3e4f"  # chat_initiated_identified_visitor.json
VISITOR = "c4e5f6a7-b8c9-4d0e-9f1a-2b3c4d5e6f70"
SESSION = "session:e7d6c5b4-a392-4817-b6f5-e4d3c2b1a090"  # the visitor's ChatBox session
# OpenAPI ignores parameters of these headers (media type and security scheme say it).
IMPLIED_HEADERS = {("header", "content-type"), ("header", "authorization")}


def settings_for(tmp_path: Path, kafka: KafkaSettings) -> Settings:
    return Settings(
        kafka=kafka, data_dir=str(tmp_path / "data"),
        http=HttpSettings(api_tokens=(API_TOKEN,)),
        store=StoreSettings(url=f"sqlite:///{tmp_path / 'state.db'}"),
        sources={"acme": SourceSettings(provider="natterly", auth_tokens=(NATTERLY_TOKEN,)),
                 "shop": SourceSettings(provider="chatshipper", secrets=(SHOP_SECRET,))})


@pytest.fixture
def run_app(tmp_path: Path) -> web.Application:
    """The app of ``parley run``, built with every role of it (not started: no Kafka needed)."""
    rt = Runtime.from_settings(settings_for(tmp_path, KafkaSettings(bootstrap="127.0.0.1:9")))
    return assemble(rt, run_roles(rt))


def as_json(value: object) -> Any:
    return json.loads(msgspec.json.encode(value))


# ------------------------------------------------------------------ the document itself


def test_docs_openapi_json_is_fresh() -> None:
    assert json.loads(DOC_FILE.read_bytes()) == json.loads(render()), (
        "regenerate with: python -m parley.openapi --write docs/openapi.json")


def test_write_command_writes_only_a_changed_document(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "docs" / "openapi.json"
    assert main(["--write", str(target)]) == 0
    assert target.read_bytes() == render() and capsys.readouterr().out == f"wrote {target}\n"
    assert main(["--write", str(target)]) == 0
    assert capsys.readouterr().out == ""


def walk(node: object) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def test_document_passes_the_openapi_3_1_validator() -> None:
    """The official OpenAPI 3.1 schema and rules (openapi-spec-validator), on the whole document
    and on a single role's (which lists fewer routes)."""
    OpenAPIV31SpecValidator(as_json(document())).validate()
    OpenAPIV31SpecValidator(json.loads(DOC_FILE.read_text())).validate()
    broken = as_json(document())
    broken["paths"]["/healthz"]["get"]["responses"] = {"200": {}}  # a response needs a description
    with pytest.raises(OpenAPIValidationError):
        OpenAPIV31SpecValidator(broken).validate()


def test_document_is_well_formed_openapi_3_1() -> None:
    doc = as_json(document())
    assert doc["openapi"].startswith("3.1.") and doc["info"]["title"] and doc["info"]["version"]
    schemes = set(doc["components"]["securitySchemes"])
    for requirement in doc["security"]:
        assert set(requirement) <= schemes
    # Every JSON Schema in it is a valid 2020-12 schema (OpenAPI 3.1's dialect) ...
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    for node in walk(doc["paths"]):
        if "schema" in node:
            Draft202012Validator.check_schema(node["schema"])
    # ... and every $ref points at something in the document.
    for node in walk(doc):
        if "$ref" in node:
            target: Any = doc
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            params = [(p["in"], p["name"]) for p in op.get("parameters", [])]
            assert len(params) == len(set(params)), (method, path)
            assert all(re.fullmatch(r"[1-5][0-9][0-9]", status) for status in op["responses"])
            assert all(r["description"] for r in op["responses"].values())
            assert op.get("security", doc["security"]) in ([], doc["security"])


def test_a_process_describes_only_its_own_routes(tmp_path: Path) -> None:
    rt = Runtime.from_settings(settings_for(tmp_path, KafkaSettings(bootstrap="127.0.0.1:9")))
    app = assemble(rt, [ReceiverRole(rt)])
    assert set(document(served_routes(app))["paths"]) == {
        "/webhooks/{source}", "/healthz", "/readyz", "/metrics", OPENAPI_PATH}


def test_document_names_no_source_and_no_secret(run_app: web.Application) -> None:
    text = msgspec.json.encode(document(served_routes(run_app))).decode()
    for configured in ("acme", "shop", NATTERLY_TOKEN, SHOP_SECRET, API_TOKEN):
        assert configured not in text


# ------------------------------------------------------------- the document and the code


def test_every_route_of_parley_run_is_documented_and_nothing_else(
        run_app: web.Application) -> None:
    doc = as_json(document())
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    served = served_routes(run_app)
    assert served - documented == set(), "routes missing from the document"
    assert documented - served == set(), "documented routes that parley run does not serve"
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"\{(\w+)\}", path)), (method, path)


def parameters_read(module_name: str) -> set[tuple[str, str]]:
    """``(in, name)`` of every query parameter and header that a module's code reads with
    ``….query.get("x")``, ``….headers.get("x")`` or ``[...]`` (also through a local
    variable bound to ``request.query``). A heuristic, but one that fails loudly."""
    tree = ast.parse(inspect.getsource(importlib.import_module(module_name)))
    where = {"query": "query", "headers": "header"}
    bound = {target.id: node.value.attr for node in ast.walk(tree)
             if isinstance(node, ast.Assign) and isinstance(node.value, ast.Attribute)
             and node.value.attr in where for target in node.targets
             if isinstance(target, ast.Name)}

    def source_of(expr: ast.expr) -> str | None:
        if isinstance(expr, ast.Attribute):
            return where.get(expr.attr)
        return where.get(bound.get(expr.id, "")) if isinstance(expr, ast.Name) else None

    found: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get" and node.args
                and isinstance(node.args[0], ast.Constant)):
            read, name = source_of(node.func.value), node.args[0].value
        elif (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load)
              and isinstance(node.slice, ast.Constant)):
            read, name = source_of(node.value), node.slice.value
        else:
            continue
        if read is not None and isinstance(name, str):
            found.add((read, name.lower() if read == "header" else name))
    return found


def test_query_parameters_and_headers_are_those_the_handlers_read(
        run_app: web.Application) -> None:
    """Per module that serves routes: what its handlers read is what the document lists."""
    doc = as_json(document())
    documented: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for route in run_app.router.routes():
        if (route.method == "HEAD" or route.resource is None
                or (route.resource.canonical, route.method.lower()) not in served_routes(run_app)):
            continue  # not described: HEAD, and the console's pages
        op = doc["paths"][route.resource.canonical][route.method.lower()]
        documented[route.handler.__module__] |= {
            (p["in"], p["name"].lower() if p["in"] == "header" else p["name"])
            for p in op.get("parameters", []) if p["in"] in ("query", "header")}
    assert set(documented) >= {"receiver.handlers", "projector.api", "consumers.search.http"}
    for module_name, params in documented.items():
        assert parameters_read(module_name) - IMPLIED_HEADERS == params, module_name


# ------------------------------------------------------------ answers against the document


def closed(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with every object schema of its components closed (no properties beyond the
    listed ones), so that an answer with a field the document lacks fails validation."""
    strict = copy.deepcopy(doc)
    for node in walk(strict["components"]["schemas"]):
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)
    return strict


def check_answer(doc: dict[str, Any], path: str, method: str, status: int, media: str,
                 body: bytes, headers: dict[str, str] | None = None) -> None:
    """Raise unless the document lists this answer and ``body`` fits its schema."""
    responses = doc["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} answered {status}: undocumented"
    answer = responses[str(status)]
    assert media in answer["content"], (path, status, media)
    for name, header in answer.get("headers", {}).items():
        assert not header["required"] or name.lower() in {h.lower() for h in headers or {}}, name
    if media != "application/json":
        return
    escape = path.replace("~", "~0").replace("/", "~1")
    pointer = f"/paths/{escape}/{method}/responses/{status}/content/application~1json/schema"
    registry = Registry().with_resource("urn:parley:openapi", DRAFT202012.create_resource(doc))
    Draft202012Validator({"$ref": f"urn:parley:openapi#{pointer}"},
                         registry=registry).validate(json.loads(body))


def test_a_shape_that_drifted_from_the_document_fails() -> None:
    """The check that the real answers go through below does catch drift."""
    doc = closed(as_json(document()))
    chat = msgspec.json.encode(ChatState(id="c-1", status="active", message_count=2))
    check_answer(doc, "/api/chats/{id}", "get", 200, "application/json", chat,
                 {"X-Parley-Projection": "v1"})
    drifted = copy.deepcopy(doc)
    del drifted["components"]["schemas"]["ChatState"]["properties"]["message_count"]
    with pytest.raises(ValidationError, match="message_count"):
        check_answer(drifted, "/api/chats/{id}", "get", 200, "application/json", chat,
                     {"X-Parley-Projection": "v1"})
    retyped = copy.deepcopy(doc)
    retyped["components"]["schemas"]["ChatState"]["properties"]["message_count"] = {
        "type": "string"}
    with pytest.raises(ValidationError):
        check_answer(retyped, "/api/chats/{id}", "get", 200, "application/json", chat,
                     {"X-Parley-Projection": "v1"})
    with pytest.raises(AssertionError, match="undocumented"):
        check_answer(doc, "/api/chats/{id}", "get", 418, "application/json", chat)


class Caller:
    """Calls a running app and checks every answer against the document."""

    def __init__(self, client: TestClient[Any, Any], doc: dict[str, Any]) -> None:
        self.client, self.doc = client, closed(doc)
        self.seen: set[tuple[str, str, int]] = set()

    async def __call__(self, method: str, path: str, status: int | None, *,
                       token: str | None = API_TOKEN,
                       params: dict[str, str] | None = None, body: bytes | None = None,
                       headers: dict[str, str] | None = None, **path_params: str) -> Any:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        async with self.client.request(method.upper(), path.format(**path_params), params=params,
                                       data=body, headers=sent) as resp:
            raw = await resp.read()
            assert status in (None, resp.status), (method, path, resp.status, raw[:300])
            check_answer(self.doc, path, method, resp.status, resp.content_type, raw,
                         dict(resp.headers))
        self.seen.add((path, method, resp.status))
        return json.loads(raw) if resp.content_type == "application/json" else raw.decode()

    async def stream(self, path: str, params: dict[str, str] | None = None,
                     **path_params: str) -> None:
        """Open an event stream: a 200 ``text/event-stream`` that starts with ``: open``."""
        async with self.client.get(path.format(**path_params), params=params,
                                   headers={"Authorization": f"Bearer {API_TOKEN}"}) as resp:
            assert resp.status == 200, (path, resp.status, await resp.read())
            assert await resp.content.readline() == b": open\n"
            check_answer(self.doc, path, "get", resp.status, resp.content_type, b"",
                         dict(resp.headers))
        self.seen.add((path, "get", resp.status))

    async def until(self, path: str, ready: Any, timeout_s: float = 30, **kwargs: Any) -> Any:
        """GET ``path`` until ``ready(answer)`` holds (roles start and consume in the
        background); every answer on the way, an error too, must fit the document."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not ready(answer := await self("get", path, None, **kwargs)):
            assert loop.time() < deadline, f"{path}: {answer}"
            await asyncio.sleep(0.2)  # poll interval of the condition above
        return answer


@pytest.fixture
async def parley(kafka_settings: KafkaSettings, topics: object, tmp_path: Path,
                 unique: str) -> AsyncIterator[Caller]:
    """A real Parley: the roles of ``parley run`` (short waits for the test) on a real broker."""
    rt = Runtime.from_settings(settings_for(tmp_path, kafka_settings))
    roles = quick_run_roles(rt, unique, wait_s=0.5, recheck_s=0.1)
    client: TestClient[Any, Any] = TestClient(TestServer(assemble(rt, roles)))
    await client.start_server()
    try:
        caller = Caller(client, as_json(document()))
        await caller.until("/readyz", lambda answer: answer["status"] == "ready", timeout_s=60,
                           token=None)
        yield caller
    finally:
        await client.close()


@pytest.mark.kafka
@pytest.mark.slow
async def test_real_answers_fit_the_document(parley: Caller) -> None:
    call, json_type = parley, {"Content-Type": "application/json"}
    accepted = await call("post", "/webhooks/{source}", 200, source="acme", headers=json_type,
                          body=(WEBHOOKS / "chat_initiated_identified_visitor.json").read_bytes())
    await call("post", "/webhooks/{source}", 200, source="acme", headers=json_type,
               body=(WEBHOOKS / "user_status_changed_visible.json").read_bytes())
    chat = await call("get", "/api/chats/{id}", 200, id=CHAT,
                      params={"min_position": accepted["position"]})
    assert chat["visitor"]["id"] == VISITOR and chat["message_count"] == 2
    assert [c["id"] for c in (await call("get", "/api/chats", 200,
                                         params={"source": "acme"}))["items"]] == [CHAT]
    assert len((await call("get", "/api/chats/{id}/messages", 200, id=CHAT))["items"]) == 2
    assert (await call("get", "/api/visitors/{id}", 200, id=VISITOR))["chats"] == [CHAT]
    agents = await call.until("/api/agents", lambda page: len(page["items"]) == 1)
    await call("get", "/api/agents/{id}", 200, id=agents["items"][0]["id"])
    await call("get", "/api/agents/{id}", 404, id="nobody")
    await call("get", "/api/reports/chats", 200, params={"group_by": "agent", "from": "2020-01-01",
                                                         "to": "2029-12-31"})
    await call("get", "/api/reports/agents", 200)
    await call("get", "/api/reports/live", 200)
    await call.until("/api/search", lambda page: [h["chat_id"] for h in page["hits"]] == [CHAT],
                     params={"q": "order"})
    await call.until("/api/consumers", lambda answer: "groups" in answer and all(
        "lag_records" in g for g in answer["groups"]))
    await call("get", "/webhooks/{source}", 200, source="shop", token=None,
               params={"type": "subscribe", "challenge": "c-123"})
    await call("get", "/healthz", 200, token=None)
    await call("get", "/metrics", 200)
    served = await call("get", OPENAPI_PATH, 200, token=None)  # public: no token needed
    assert served == as_json(document())

    await call.stream("/api/chats/{id}/stream", id=CHAT)
    await call.stream("/api/stream", {"kind": "chat", "status": "waiting", "source": "acme"})

    # Errors, each with the code the document gives its status.
    await call("get", "/api/chats/{id}/stream", 400, id=CHAT, params={"after": "nonsense"})
    await call("get", "/api/stream", 401, token=None)
    await call("get", "/api/chats/{id}", 404, id="no-such-chat")
    await call("get", "/api/visitors/{id}", 404, id="no-such-visitor")
    await call("get", "/api/chats/{id}/messages", 404, id="no-such-chat")
    await call("get", "/api/chats", 401, token=None)
    await call("get", "/api/consumers", 401, token="not-a-token")
    await call("get", "/metrics", 401, token=None)
    await call("get", "/api/chats", 400, params={"status": "open"})
    await call("get", "/api/chats", 400, params={"type": "bogus"})
    await call("get", "/api/chats/{id}", 400, id=CHAT, params={"min_position": "nonsense"})
    await call("get", "/api/agents", 504, params={
        "min_position": accepted["position"].rsplit(":", 1)[0] + ":999999"})
    await call("get", "/api/search", 400, params={"q": " "})
    await call("get", "/api/reports/chats", 400, params={"group_by": "week"})
    await call("post", "/webhooks/{source}", 400, source="acme", headers=json_type, body=b"{")
    await call("post", "/webhooks/{source}", 401, source="shop", headers=json_type, body=b"{}")
    await call("post", "/webhooks/{source}", 404, source="nope", headers=json_type, body=b"{}")
    await call("post", "/webhooks/{source}", 415, source="acme", body=b"{}",
               headers={"Content-Type": "text/plain"})
    await call("get", "/webhooks/{source}", 405, source="acme", token=None)
    await call("get", "/webhooks/{source}", 403, source="shop", token=None)

    # An access request, then an erasure request (last: it erases the visitor).
    exported = await call("get", "/api/visitors/{id}/export", 200, id=VISITOR)
    assert [c["chat"]["id"] for c in exported["chats"]] == [CHAT]
    assert len(exported["chats"][0]["messages"]) == 2
    await call("get", "/api/visitors/{id}/export", 404, id="no-such-visitor")
    await call("delete", "/api/visitors/{id}", 401, id=VISITOR, token=None)
    await call("delete", "/api/visitors/{id}", 404, id="no-such-visitor")
    erased = await call("delete", "/api/visitors/{id}", 202, id=VISITOR)
    assert erased["aggregates"] == [f"visitor:{VISITOR}", f"visitor:{SESSION}", f"chat:{CHAT}"]
    await call.until("/api/visitors/{id}", lambda v: v.get("erasure") is not None, id=VISITOR)
    chat = await call.until("/api/chats/{id}", lambda c: c.get("erasure") is not None, id=CHAT)
    assert chat["erasure"]["id"] == erased["erasure_id"] and chat["visitor"]["name"] is None

    # Every documented bound of a limit is the one the handler enforces.
    for path, operations in parley.doc["paths"].items():
        for param in operations.get("get", {}).get("parameters", []):
            if param["name"] == "limit":
                bounds = param["schema"]
                extra = {"q": "order"} if path == "/api/search" else {}
                ids = {"id": CHAT} if "{id}" in path else {}
                for limit, status in ((bounds["maximum"], 200), (bounds["maximum"] + 1, 400)):
                    await call("get", path, status, params={"limit": str(limit), **extra}, **ids)

    answered = {(path, method) for path, method, status in parley.seen if status < 300}
    documented = {(p, m) for p, ops in parley.doc["paths"].items() for m in ops}
    assert answered == documented  # a real 2xx of every documented operation was checked


class _ChatsRole:
    """Two documented routes, answering whatever they are asked."""

    name = "chats"

    def install(self, app: web.Application, rt: Runtime) -> None:
        async def ok(request: web.Request) -> web.Response:
            return web.json_response({"items": []})

        app.router.add_get("/api/chats", ok)
        app.router.add_get("/api/agents", ok)
        app.router.add_get("/healthz-extra", ok)  # not under /api/: not checked


async def test_a_query_parameter_the_operation_does_not_take_is_a_400_naming_it() -> None:
    from parley.http import build_app
    from parley.openapi import install_openapi

    app = build_app(Runtime.from_settings(Settings(http=HttpSettings())), [_ChatsRole()])
    install_openapi(app)
    async with TestClient(TestServer(app)) as client:
        # A typo was an unfiltered answer: every chat, 200.
        resp = await client.get("/api/chats?stauts=closed")
        assert resp.status == 400
        answer = await resp.json()
        assert answer["error"] == "bad_request"
        assert answer["detail"].startswith("unknown query parameter 'stauts': this operation "
                                           "takes agent, cursor, limit, min_position, source, ")
        resp = await client.get("/api/agents?limit=5")
        assert resp.status == 400 and "takes min_position" in (await resp.json())["detail"]
        for fine in ("/api/chats?status=closed&limit=5", "/api/agents", "/healthz-extra?x=1",
                     "/api/agents?min_position=parley.events.agent:0:0"):
            assert (await client.get(fine)).status == 200, fine
