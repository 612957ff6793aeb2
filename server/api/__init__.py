"""The REST API under /api/v1 (FastAPI on Starlette; OpenAPI 3.1 at /api/v1/openapi.json)."""
