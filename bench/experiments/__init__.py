"""bench: experiments (bench/README.md)."""
