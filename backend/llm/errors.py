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


class InvalidChatRequest(LLMError):
    """The chat cannot be run as asked (the prompt is longer than the model's context, its chat
    template refuses the messages, a response format the grammar engine cannot follow): the
    caller must change the request. The API answers 400; ``param`` names the request field at
    fault (``messages``, ``response_format``, ``max_tokens``) when one is."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class InferenceBusy(InferenceUnavailable):
    """Every gpu worker is busy and the wait queue is full, or the chat waited longer than the
    stated limit. ``retry_after_s`` says when to try again (the API's ``Retry-After``)."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
