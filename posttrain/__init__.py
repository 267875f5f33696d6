"""posttrain: LLM post-training with CPL, DRPO and RLBFF on the Hugging Face stack."""

__version__ = "0.1.0"
