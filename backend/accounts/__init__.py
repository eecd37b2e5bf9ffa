"""Accounts: who is acting (Actor), their role, and what each role may do."""

from backend.accounts.actor import Actor, PermissionDenied, Role

__all__ = ["Actor", "PermissionDenied", "Role"]
