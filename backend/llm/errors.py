"""Errors a person can act on. They derive from ``ValueError`` so pages and the CLI show their
message as is (never a stack trace)."""

from __future__ import annotations


class LLMError(ValueError):
    """A model could not answer; the message says which model or endpoint, and what to try."""


class EndpointError(LLMError):
    """An OpenAI-compatible endpoint refused, timed out or answered with an error. The message
    names the endpoint URL."""


class ModelLoadError(LLMError):
    """A local model folder or hub id could not be loaded."""


class InferenceUnavailable(LLMError):
    """No worker serves the gpu queue (or none picked the request up in time)."""


class InferenceTimeout(LLMError):
    """A worker went silent during a chat."""
