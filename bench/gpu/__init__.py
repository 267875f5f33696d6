"""The GPU check: bench/gpu/README.md."""
