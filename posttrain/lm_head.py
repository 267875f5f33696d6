"""Project only some positions onto the vocabulary, with any causal LM and any transformers version.

The LM head is the costliest layer per position of a small model (a 49k vocabulary here), and CPL's
prompt and padding positions, or a reward model's every position but the last, need no logits. Recent
transformers slice positions before the head when given a boolean ``logits_to_keep``; the version range
vLLM supports does not, so posttrain selects the rows itself with a forward pre-hook on the output
embedding: the full forward still runs through every wrapper (DDP, DeepSpeed, PEFT, FSDP), so gradient
synchronisation and parameter gathering are unchanged, and the head sees ``hidden[mask]`` only.
"""

from __future__ import annotations

import contextlib

import torch


def output_embedding(model) -> torch.nn.Module:
    """The LM head of ``model`` under DDP/DeepSpeed (``.module``) and PEFT wrappers."""
    inner = model
    while hasattr(inner, "module"):
        inner = inner.module
    if hasattr(inner, "get_base_model"):
        inner = inner.get_base_model()
    return inner.get_output_embeddings()


@contextlib.contextmanager
def project_positions(model, mask: torch.Tensor):
    """Inside the block, a forward of ``model`` returns logits for the positions where ``mask`` (bool, the
    forward's (N, L)) is true only: (T, V) rows in ``hidden[mask]``'s row-major order."""
    head = output_embedding(model)

    def select(module, args):
        return (args[0][mask], *args[1:])

    handle = head.register_forward_pre_hook(select)
    try:
        yield
    finally:
        handle.remove()
