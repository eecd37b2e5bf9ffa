"""Agents domain package."""
