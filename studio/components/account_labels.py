"""Names, in the reader's language, for what the accounts pages list: roles, audit actions and
the kinds of things that belong to a workspace."""

from __future__ import annotations

from studio.i18n import N_, _

ROLES = ("user", "builder", "admin")
_ROLE_LABELS = {"user": N_("User"), "builder": N_("Builder"), "admin": N_("Admin")}
_ROLE_HELP = N_("User: chats with the bots shared with them. Builder: also creates prompts, "
                "knowledge bases and agents and launches training. Admin: also manages users, "
                "workspaces, workers and settings.")
_ACTIONS = {
    "create": N_("Created"), "update": N_("Changed"), "delete": N_("Deleted"),
    "launch": N_("Launched"), "cancel": N_("Cancelled"), "retry": N_("Retried"),
    "publish": N_("Published"), "unpublish": N_("Unpublished"), "move": N_("Moved"),
    "login": N_("Logged in"), "login_failed": N_("Failed login"), "logout": N_("Logged out"),
    "rotate": N_("Rotated"), "revoke": N_("Revoked"),
}
_KINDS = {
    "jobs": N_("Jobs"), "job": N_("Job"), "models": N_("Models"), "model": N_("Model"),
    "secrets": N_("Secrets"), "secret": N_("Secret"), "secret_key": N_("Secret key"),
    "user": N_("User"), "workspace": N_("Workspace"), "api_key": N_("API key"),
    "prompts": N_("Prompts"), "prompt": N_("Prompt"),
    "knowledge_bases": N_("Knowledge bases"), "knowledge_base": N_("Knowledge base"),
    "agents": N_("Agents"), "agent": N_("Agent"), "datasets": N_("Datasets"),
    "dataset": N_("Dataset"), "conversations": N_("Conversations"),
    "conversation": N_("Conversation"), "documents": N_("Documents"),
    "document": N_("Document"), "bots": N_("Bots"), "bot": N_("Bot"),
    "tools": N_("Tools"), "tool": N_("Tool"), "chunks": N_("Chunks"),
    "corpora": N_("Corpora"), "corpus": N_("Corpus"), "corpus_version": N_("Corpus version"),
}


def role_label(role: str) -> str:
    return _(_ROLE_LABELS[role]) if role in _ROLE_LABELS else role


def role_help() -> str:
    return _(_ROLE_HELP)


def action_label(action: str) -> str:
    return _(_ACTIONS[action]) if action in _ACTIONS else action


def kind_label(kind: str) -> str:
    return _(_KINDS[kind]) if kind in _KINDS else kind
