"""The OpenAPI document states exactly what the server accepts and answers.

tests/api/test_schemathesis.py generates requests from the document; these
tests pin the promises it must keep: constraints the server checks are in the
document (so a request the document allows is not refused as invalid, and one
it rules out is refused), every status an operation can answer is documented,
and a method an operation does not have answers 405 with ``Allow``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.api.conftest import assert_problem

MAX_ID = 2**63 - 1


@pytest.fixture
def doc(client) -> dict[str, Any]:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def _operations(doc: dict[str, Any]):
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def _body_schema(doc: dict[str, Any], path: str, method: str = "post") -> dict[str, Any]:
    return doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]


def _param_schema(doc: dict[str, Any], path: str, name: str, method: str = "get") -> dict:
    for parameter in doc["paths"][path][method]["parameters"]:
        if parameter["name"] == name:
            return parameter["schema"]
    raise AssertionError(f"{method} {path} has no parameter {name}")


def _allows(doc: dict[str, Any], schema: dict[str, Any], instance: Any) -> bool:
    validator = Draft202012Validator({**schema, "components": doc["components"]})
    return validator.is_valid(instance)


def _strings(doc: dict[str, Any], node: Any, seen: set[str] | None = None):
    """Every string schema reachable from ``node`` (following $refs once)."""
    seen = set() if seen is None else seen
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name not in seen:
                seen.add(name)
                yield from _strings(doc, doc["components"]["schemas"][name], seen)
        if node.get("type") == "string":
            yield node
        for value in node.values():
            yield from _strings(doc, value, seen)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(doc, value, seen)


def test_every_operation_documents_what_it_can_answer(doc):
    for path, method, operation in _operations(doc):
        responses = operation["responses"]
        where = f"{method} {path}"
        for status in ("401", "403", "422", "429", "503"):
            assert status in responses, (where, status)
            assert "application/problem+json" in responses[status]["content"], (where, status)
        for status in ("429", "503"):
            assert "Retry-After" in responses[status]["headers"], (where, status)
        if "requestBody" in operation:
            assert "413" in responses, where
        if any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", [])):
            assert "idempotency_key_reused" in responses["409"]["description"], where
        if "{" in path:
            assert "404" in responses, where


def test_path_ids_are_bounded_as_the_database_holds_them(doc):
    ids = [
        parameter["schema"]
        for _, _, operation in _operations(doc)
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path" and parameter["name"] == "id"
    ]
    assert len(ids) >= 8
    for schema in ids:
        assert schema["type"] == "integer"
        assert schema["minimum"] == 1 and schema["maximum"] == MAX_ID


def test_no_request_string_may_hold_a_control_character(doc):
    """The input guard refuses C0 controls (JSON text may hold tab, LF, CR): so does the
    document, for every string a request can carry."""
    checked = 0
    for path, _, operation in _operations(doc):
        for parameter in operation.get("parameters", []):
            for schema in _strings(doc, parameter["schema"]):
                assert "enum" in schema or not re.search(schema["pattern"], "ab\x00"), schema
                assert "enum" in schema or not re.search(schema["pattern"], "a\tb"), schema
                checked += 1
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body and path != "/api/v1/usage":  # its events are refused one by one, by index
            for schema in _strings(doc, body["schema"]):
                if "enum" in schema or schema.get("format") in ("date", "date-time"):
                    continue
                assert not re.search(schema["pattern"], "ab\x00"), schema
                assert not re.search(schema["pattern"], "a\x1fb"), schema
                checked += 1
    assert checked > 40  # the walk reached the bodies and parameters


@pytest.mark.parametrize(
    ("path", "instance"),
    [
        ("/api/v1/usage", {"events": []}),
        ("/api/v1/organisations", {"slug": ""}),
        ("/api/v1/subscriptions/{id}/seats", {"user_email": "0"}),
        ("/api/v1/invoice-runs", {"period": "0000-00"}),
        ("/api/v1/invoice-runs", {"period": "9999-12"}),
        ("/api/v1/invoice-runs", {"period": "1999-12"}),
        ("/api/v1/invoice-runs", {"period": "2026-13"}),
        ("/api/v1/vendors", {"slug": "Acme Soft", "name": "Acme"}),
        ("/api/v1/vendors", {"slug": "acme", "name": "   "}),
        ("/api/v1/subscriptions", {"product": "", "quantity": 1}),
    ],
)
def test_the_document_rules_out_what_the_server_refuses(doc, path, instance):
    schema = _body_schema(doc, path)
    assert not _allows(doc, schema, instance)


@pytest.mark.parametrize(
    ("path", "instance"),
    [
        ("/api/v1/invoice-runs", {"period": "2000-01"}),
        ("/api/v1/invoice-runs", {"period": "9998-12"}),
        ("/api/v1/subscriptions", {"organisation": None, "product": "cad-suite", "quantity": 1}),
        ("/api/v1/subscriptions/{id}/seats", {"user_email": "pat.lee@acme.example"}),
        ("/api/v1/vendors", {"slug": "a" * 63, "name": "Acme", "status": "active"}),
        (
            "/api/v1/prices",
            {
                "product": "cad-suite",
                "currency": "EUR",
                "model": "metered",
                "meter": "api_calls",
                "tier_mode": "graduated",
                "tiers": [{"up_to": 100, "unit_amount": 5}, {"up_to": None, "unit_amount": 2}],
            },
        ),
    ],
)
def test_the_document_allows_what_the_server_accepts(doc, path, instance):
    assert _allows(doc, _body_schema(doc, path), instance)


def test_rules_across_fields_are_in_the_document(doc):
    price = _body_schema(doc, "/api/v1/prices")
    base = {"product": "cad-suite", "currency": "EUR"}
    assert not _allows(doc, price, {**base, "model": "metered"})  # no meter
    assert not _allows(doc, price, {**base, "model": "seat", "meter": "api_calls"})
    assert not _allows(doc, price, {**base, "model": "seat", "tier_mode": "volume"})
    assert not _allows(
        doc, price, {**base, "model": "seat", "tiers": [{"up_to": None, "unit_amount": 1}]}
    )
    assert _allows(doc, price, {**base, "model": "seat", "unit_amount": 900})
    product = _body_schema(doc, "/api/v1/products")
    meter = {"key": "users", "name": "Users", "unit": "user", "aggregation": "unique_count"}
    body = {"sku": "cad-suite", "vendor": "acme-soft", "name": "CAD"}
    assert not _allows(doc, product, {**body, "meters": [meter]})
    assert _allows(doc, product, {**body, "meters": [{**meter, "property": "user"}]})


def test_query_parameters_state_the_server_s_forms(doc):
    period = _param_schema(doc, "/api/v1/exports/invoices.csv", "period")
    assert _allows(doc, period, "2026-05") and not _allows(doc, period, "0000-00")
    cursor = _param_schema(doc, "/api/v1/organisations", "cursor")
    assert not _allows(doc, cursor, "garbage")


def test_the_server_refuses_what_the_document_rules_out(api, make_org, make_product):
    council = api("council")
    acme = make_org("acme")
    period = assert_problem(council.post("/invoice-runs", json={"period": "0000-00"}), 422)
    assert "period" in period["errors"]
    slug = assert_problem(council.post("/vendors", json={"slug": "", "name": "A"}), 422)
    assert "slug" in slug["errors"]
    org = api("organisation", org=acme)
    product = make_product(capacity=2)
    sub_id = org.post("/subscriptions", json={"product": product.sku, "quantity": 1}).get_json()[
        "id"
    ]
    email = assert_problem(
        org.post(f"/subscriptions/{sub_id}/seats", json={"user_email": "0"}), 422
    )
    assert "user_email" in email["errors"]
    assert_problem(council.get("/exports/invoices.csv?period=9999-12"), 422)
    # organisation: null is what leaving it out is (the document says it may be null).
    other = make_product(capacity=2)
    created = org.post(
        "/subscriptions", json={"organisation": None, "product": other.sku, "quantity": 1}
    )
    assert created.status_code in (201, 202), created.get_json()


def test_every_cursor_of_the_documented_form_is_accepted(api, make_org, doc):
    from portal.api.pagination import encode_cursor

    for n in range(3):
        make_org(f"org-{n}")
    council = api("council")
    pattern = _param_schema(doc, "/api/v1/organisations", "cursor")["anyOf"][0]["pattern"]
    for last_id in (0, 1, 2**32, MAX_ID):
        cursor = encode_cursor(last_id)
        assert re.fullmatch(pattern, cursor), cursor
        response = council.get(f"/organisations?cursor={cursor}")
        assert response.status_code == 200, response.get_json()
    # The largest and the smallest strings of the form are cursors too.
    for cursor in ("f_________8", "AAAAAAAAAAA"):
        assert re.fullmatch(pattern, cursor)
        assert council.get(f"/organisations?cursor={cursor}").status_code == 200
    assert council.get("/organisations?cursor=AAAAAAAAAAA").get_json()["data"]
    assert council.get("/organisations?cursor=f_________8").get_json()["data"] == []


def test_a_method_an_operation_does_not_have_answers_405_with_allow(api, client):
    council = api("council")
    response = council.delete("/organisations")
    body = assert_problem(response, 405)
    assert body["title"] == "Method Not Allowed"
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert {"GET", "POST"} <= allowed and "DELETE" not in allowed
    response = council.client.put("/api/v1/invoices/1", headers=council._headers(None))
    assert response.status_code == 405 and "GET" in response.headers["Allow"]
    # Pages as well: a person's browser gets the page, with the header.
    page = client.put("/login")
    assert page.status_code == 405 and "POST" in page.headers["Allow"]
