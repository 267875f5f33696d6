"""Trainers: one trainer and one config per file, each a subclass of a transformers/TRL trainer."""
