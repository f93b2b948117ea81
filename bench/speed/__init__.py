"""bench: speed (bench/README.md)."""
