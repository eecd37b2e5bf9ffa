"""Reusable widgets: session/actor, errors, job progress, charts."""
