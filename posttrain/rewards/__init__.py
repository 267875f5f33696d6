"""Reward functions: principle reward models (RLBFF) and the TRL reward-function wrappers around them;
verifiable math correctness (:mod:`posttrain.rewards.math`, DRPO)."""
