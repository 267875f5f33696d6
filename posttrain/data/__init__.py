"""Data adapters: raw records (local files or hub) → normalized records → tokenized batches."""
