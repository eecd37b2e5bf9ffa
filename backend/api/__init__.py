"""FastAPI app: OpenAI-compatible endpoints for published bots."""
