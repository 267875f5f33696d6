"""Evaluators for reward models and policies (RM-Bench: :mod:`posttrain.evaluation.rm_bench`)."""
