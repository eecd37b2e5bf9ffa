"""An agent's settings, checked in one place with messages that say what to fix.

Stored as JSON on the agent (the draft) and on each published version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

AGENT_TYPES = ("tools", "plan")
KB_MODES = ("context", "tool", "both")
MIN_CONTEXT_BUDGET = 256
MAX_CONTEXT_BUDGET = 2_000_000
DEFAULT_IDK = ("I'm sorry, I don't know: I found nothing about that in the documents I can "
               "search.")


@dataclass
class AgentConfig:
    """What an agent is made of. Every field has a default, so a bot needs only a model."""

    model: str = ""  # a registered chat model's name
    type: str = "tools"  # tools: a tool-calling loop; plan: plan-and-execute
    params: dict[str, Any] = field(default_factory=dict)  # temperature, max_new_tokens ...
    system_prompt: str = "You are a helpful assistant."
    saved_prompt: str | None = None  # a playground prompt's name (its system text is used)
    saved_prompt_version: int | None = None  # None: the prompt's latest version
    knowledge_bases: list[str] = field(default_factory=list)
    kb_mode: str = "context"  # context: retrieved on every question; tool: the model searches
    kb_top_k: int = 4  # passages retrieved per question (as many as fit the context go in)
    # tokens a question may use, prompt and answer together; None: the model's context window
    # (8,192 for a model whose window the studio cannot read). The smaller of the two counts.
    context_budget: int | None = None
    # hits below this cosine similarity are not relevant (hybrid search); None keeps the top k
    kb_threshold: float | None = 0.2
    citations: bool = True
    idk_message: str = DEFAULT_IDK  # said when the knowledge bases hold nothing relevant
    tools: list[str] = field(default_factory=list)  # calculator, http:NAME, mcp:SERVER/TOOL ...
    max_steps: int = 6
    memory_turns: int = 6  # the last N question/answer pairs go with each question
    memory_summary: bool = False  # older turns are kept as a running summary
    welcome: str = ""
    suggestions: list[str] = field(default_factory=list)
    tool_timeout_s: float = 15.0
    tool_max_chars: int = 20_000

    def __post_init__(self) -> None:
        if self.type not in AGENT_TYPES:
            raise ValueError(f"The agent type is 'tools' (a tool-calling loop) or 'plan' "
                             f"(plan-and-execute), not {self.type!r}.")
        if self.kb_mode not in KB_MODES:
            raise ValueError(f"Knowledge is used as 'context', as a 'tool' or 'both' "
                             f"(got {self.kb_mode!r}).")
        for name, low, high in (("max_steps", 1, 50), ("memory_turns", 0, 100),
                                ("kb_top_k", 1, 50)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"{name} must be a whole number from {low} to {high} "
                                 f"(got {value!r}).")
        if self.context_budget in (0, None):
            self.context_budget = None
        elif (not isinstance(self.context_budget, int) or isinstance(self.context_budget, bool)
              or not MIN_CONTEXT_BUDGET <= self.context_budget <= MAX_CONTEXT_BUDGET):
            raise ValueError(f"context_budget must be a whole number of tokens from "
                             f"{MIN_CONTEXT_BUDGET} to {MAX_CONTEXT_BUDGET:,}, or empty for "
                             f"the model's own context (got {self.context_budget!r}).")
        if not 0.5 <= float(self.tool_timeout_s) <= 300:
            raise ValueError("tool_timeout_s must be between 0.5 and 300 seconds.")
        if not 100 <= int(self.tool_max_chars) <= 1_000_000:
            raise ValueError("tool_max_chars must be between 100 and 1,000,000.")
        self.knowledge_bases = [str(k).strip() for k in self.knowledge_bases if str(k).strip()]
        self.tools = list(dict.fromkeys(str(t).strip() for t in self.tools if str(t).strip()))
        self.suggestions = [str(s).strip() for s in self.suggestions if str(s).strip()][:8]
        if not isinstance(self.params, dict):
            raise ValueError("params must be a mapping such as {\"temperature\": 0.2}.")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AgentConfig:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown agent setting(s): {', '.join(unknown)}. "
                             f"Known: {', '.join(sorted(known))}.")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
