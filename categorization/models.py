"""Models of the categorization app (filled by its issue)."""
