"""Models of the dedupe app (filled by its issue)."""
