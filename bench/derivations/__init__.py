"""bench: derivations (bench/README.md)."""
