"""Model providers and inference: local Hugging Face models (on workers or in-process),
OpenAI-compatible endpoints, token streaming, embeddings, the LangChain adapter and the tiny
offline models used by tests and demos. No Streamlit, no Celery, no registry lookups here: the
services resolve a registered model into a :class:`backend.llm.types.ModelSpec` first."""
