"""The OpenAI-compatible API. Published bots and registered models are served from here."""

from __future__ import annotations

from fastapi import FastAPI

from backend.api.auth import install_error_handlers
from backend.api.chat_routes import router as chat_router
from backend.api.models_routes import router as models_router

app = FastAPI(title="LLM Studio API", version="0.1.0")
install_error_handlers(app)  # 401/403 as OpenAI-style JSON errors
app.include_router(models_router)  # /v1/models: every route but /health needs an API key
app.include_router(chat_router)  # /v1/chat/completions, streaming or not


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
