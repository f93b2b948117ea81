"""bench: quality (bench/README.md)."""
