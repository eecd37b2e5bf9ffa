"""The OpenAI-compatible API. Published bots and registered models are served from here."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI(title="LLM Studio API", version="0.1.0")


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
