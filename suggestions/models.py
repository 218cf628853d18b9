"""Models of the suggestions app (filled by its issue)."""
