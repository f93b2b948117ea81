"""The benchmarks, derivations, recipes and audit sheets behind curate's numbers
(bench/README.md). Run a script from the repository root: ``python -m bench.<kind>.<script>``."""
