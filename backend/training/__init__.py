"""Training domain package."""
