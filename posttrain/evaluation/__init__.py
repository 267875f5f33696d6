"""Evaluators for reward models and policies (RM-Bench: :mod:`posttrain.evaluation.rm_bench`; math benchmarks,
pass@1 and response length: :mod:`posttrain.evaluation.math_eval`)."""
