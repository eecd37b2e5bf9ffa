"""Knowledge domain package."""
