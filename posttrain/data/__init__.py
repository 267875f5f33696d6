"""Data adapters: raw records (local files or hub) → normalized records → tokenized batches."""

# Token limits: the one source of the defaults of a recipe's data.max_length / data.max_prompt_length and of
# the method configs' max_length / max_prompt_length (a recipe always sets the config's from its data section).
MAX_LENGTH = 1024
MAX_PROMPT_LENGTH = 512
