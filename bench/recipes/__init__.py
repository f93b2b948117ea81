"""bench: recipes (bench/README.md)."""
