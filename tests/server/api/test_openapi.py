"""GET /api/v1/openapi.json is generated from the code: a valid OpenAPI 3.1 document that
lists every route, each documenting its error responses with the one error schema."""

from __future__ import annotations

from fastapi.routing import APIRoute
from openapi_spec_validator import validate

from server.api.app import ROUTERS
from server.api.context import ApiContext

from .conftest import Api


async def test_openapi_document_is_valid_and_complete(api: Api) -> None:
    async with api.client() as client:
        response = await client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["openapi"].startswith("3.1.")
    validate(spec)  # raises on an invalid document

    routes = {
        (route.path, method.lower())
        for make in ROUTERS
        for route in make(ApiContext(api.auth)).routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert documented == routes
    assert {
        ("/session", "post"), ("/session", "delete"), ("/me", "get"), ("/people", "get"), ("/people", "post"),
        ("/people/{name}", "patch"), ("/tokens", "post"), ("/tokens", "get"),
        ("/tokens/{token_id}", "delete"),
        ("/oidc/login", "get"), ("/oidc/callback", "get"), ("/audit", "get"),
        ("/spaces/{slug}/threads", "post"), ("/spaces/{slug}/threads", "get"),
        ("/threads/{thread_id}", "get"), ("/threads/{thread_id}/messages", "post"),
    } <= documented  # fmt: skip

    error_ref = "#/components/schemas/ErrorBody"
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            errors = {code: r for code, r in operation["responses"].items() if code.startswith("4")}
            assert errors, f"{method.upper()} {path} documents no error response"
            for code, documented_response in errors.items():
                schema = documented_response["content"]["application/json"]["schema"]
                assert schema == {"$ref": error_ref}, f"{method.upper()} {path} {code}"
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # no second error shape
