"""Benchmarks of posttrain's trainers against TRL's (``make bench``; never part of ``make test``).

Each script is a module run from the repository root, e.g. ``python -m bench.cpl_vs_trl --threads 1``;
bench/README.md lists them, what each compares and where its results go."""
