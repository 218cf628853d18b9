"""Models of the emotion app (filled by its issue)."""
