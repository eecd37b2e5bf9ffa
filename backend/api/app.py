"""The OpenAI-compatible API. Published bots and registered models are served from here."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from backend.api.auth import install_error_handlers
from backend.api.chat_request import ChatCompletionRequest
from backend.api.chat_routes import router as chat_router
from backend.api.models_routes import router as models_router
from backend.api.schemas import STREAM_EVENT, ChatCompletion, ChatCompletionChunk

app = FastAPI(title="LLM Studio API", version="0.1.0",
              description="OpenAI-compatible: the `openai` client and LangChain's ChatOpenAI "
                          "work with `base_url=http://HOST:PORT/v1` and a studio API key.")
install_error_handlers(app)  # 401/403/404/405/429 as OpenAI-style JSON errors
app.include_router(models_router)  # /v1/models: every route but /health needs an API key
app.include_router(chat_router)  # /v1/chat/completions, streaming or not

# bodies the chat route reads and writes by hand (so errors are OpenAI's 400s, not 422s)
_DOCUMENTED = (ChatCompletionRequest, ChatCompletion, ChatCompletionChunk)


def _openapi() -> dict[str, Any]:
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, description=app.description,
                          routes=app.routes)
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        # FastAPI's 422 never comes: install_error_handlers answers such requests with a 400
        for ops in doc.get("paths", {}).values():
            for op in ops.values():
                op.get("responses", {}).pop("422", None)
        for gone in ("HTTPValidationError", "ValidationError"):
            schemas.pop(gone, None)
        for model in _DOCUMENTED:
            js = model.model_json_schema(ref_template="#/components/schemas/{model}",
                                         mode="validation" if model is ChatCompletionRequest
                                         else "serialization")
            schemas.update(js.pop("$defs", {}))
            schemas[model.__name__] = js
        schemas["ChatCompletionStreamEvent"] = STREAM_EVENT
        app.openapi_schema = doc
    return app.openapi_schema


app.openapi = _openapi  # type: ignore[method-assign]


@app.get("/health", summary="Liveness (no key needed)")
def health() -> dict[str, str]:
    return {"status": "ok"}
