"""bench: audit (bench/README.md)."""
