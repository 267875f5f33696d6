"""Sampling from a causal LM for evaluation: the HF ``generate`` and vLLM backends behind ``posttrain eval``.

Both backends take prompts already rendered to token ids (:func:`render_prompts`, the model's chat template
with the assistant turn opened), so they see identical inputs, and return :class:`Generation` objects cut at
the first end-of-sequence token. ``settings`` is any object with ``samples``, ``temperature``, ``top_p``,
``max_new_tokens`` and ``seed`` (:class:`Sampling`, or an evaluator's own settings dataclass).
Temperature 0 means greedy decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from posttrain import log
from posttrain.errors import UserError
from posttrain.models import ModelSpec, load_model, load_tokenizer, resolve_model_path
from posttrain.vllm_support import CPU_KV_CACHE_GB, check_model, check_vllm

BACKENDS = ("hf", "vllm")


@dataclass
class Generation:
    """One sampled response: decoded text, generated tokens (before EOS), and whether it hit the limit."""

    text: str
    length: int
    truncated: bool


@dataclass
class Sampling:
    """How to sample: k samples per prompt at a temperature (0 = greedy), top-p, a token budget, a seed."""

    samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 1024
    seed: int = 0
    # vLLM only: decode against this JSON schema (vLLM's structured outputs); HF generate samples free text
    json_schema: dict | None = None


def render_prompts(tokenizer, prompts: Sequence[list[dict]]) -> list[list[int]]:
    """Token ids of each conversational prompt with the chat template and the assistant turn opened.

    A tokenizer without a chat template (a base model) gets the messages' text joined by blank lines.
    """
    from posttrain.data.tokenize import render  # lazy: data.tokenize imports torch; an API judge needs none

    plain = tokenizer.chat_template is None
    if plain:
        log.warning("the tokenizer has no chat template: prompting with plain text")
    # the template carries its own special tokens; plain text gets the tokenizer's (e.g. BOS)
    return [tokenizer(render(tokenizer, p), add_special_tokens=plain)["input_ids"] for p in prompts]


def _eos_ids(tokenizer, generation_config) -> list[int]:
    ids = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _finish(tokenizer, token_ids: Sequence[int], eos: set[int], hit_limit: bool) -> Generation:
    """Cut at the first EOS; a response without one that filled the budget is truncated."""
    ids = list(token_ids)
    end = next((i for i, t in enumerate(ids) if t in eos), None)
    if end is not None:
        ids = ids[:end]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    return Generation(text=text, length=len(ids), truncated=end is None and hit_limit)


class HFGenerator:
    """``model.generate`` over batches of ``batch_size`` sequences (each prompt repeated k times)."""

    def __init__(self, model, tokenizer, *, batch_size: int = 32, progress: bool = True):
        import torch

        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.progress = batch_size, progress
        self.device = next(model.parameters()).device
        self.torch = torch
        self.eos = _eos_ids(tokenizer, getattr(model, "generation_config", None))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos[0]

    def generate(
        self, prompt_ids: list[list[int]], settings: Sampling, desc: str = "generating"
    ) -> list[list[Generation]]:
        from tqdm.auto import tqdm

        torch, k = self.torch, settings.samples
        torch.manual_seed(settings.seed)
        # longest prompts first: the padding within a batch stays small and a memory error shows early
        requests = sorted(
            ((p, s) for p in range(len(prompt_ids)) for s in range(k)), key=lambda r: -len(prompt_ids[r[0]])
        )
        out: list[list[Generation | None]] = [[None] * k for _ in prompt_ids]
        # top_k=0: no top-k cut (transformers would otherwise apply its default of 50), as in vLLM
        sampling = (
            {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p, "top_k": 0}
            if settings.temperature > 0
            else {"do_sample": False}
        )
        eos = set(self.eos)
        batches = range(0, len(requests), self.batch_size)
        self.model.eval()
        for start in tqdm(batches, desc=desc, unit="batch", disable=not self.progress):
            batch = requests[start : start + self.batch_size]
            seqs = [prompt_ids[p] for p, _ in batch]
            width = max(len(s) for s in seqs)
            input_ids = torch.tensor([[self.pad_id] * (width - len(s)) + s for s in seqs], device=self.device)
            mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=self.device)
            with torch.inference_mode():
                generated = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=mask,
                    max_new_tokens=settings.max_new_tokens,
                    eos_token_id=self.eos,
                    pad_token_id=self.pad_id,
                    **sampling,
                )
            for (p, s), row in zip(batch, generated[:, width:].tolist()):
                out[p][s] = _finish(self.tokenizer, row, eos, len(row) >= settings.max_new_tokens)
        return out  # type: ignore[return-value]


class VLLMGenerator:
    """``vllm.LLM.generate`` with ``SamplingParams(n=k, ...)`` on pre-tokenized prompts."""

    def __init__(self, model_path: str, tokenizer, *, dtype: str = "auto", seed: int = 0, **llm_kwargs):
        import os

        import torch
        from transformers import GenerationConfig
        from vllm import LLM

        if not torch.cuda.is_available():
            # the CPU backend otherwise reserves gpu_memory_utilization (0.9) × the machine's memory
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(CPU_KV_CACHE_GB))
        # vLLM's CPU sampler refuses a per-request seed ("CPU Generator does not use offset"), so there the
        # engine-wide seed alone makes a run reproducible (same prompts in the same order, same samples)
        self.request_seed = seed if torch.cuda.is_available() else None
        self.tokenizer = tokenizer
        self.llm = LLM(model=model_path, tokenizer=model_path, dtype=dtype, seed=seed, **llm_kwargs)
        try:  # vLLM also stops at the generation config's EOS ids (e.g. Llama 3's <|eot_id|>)
            generation_config = GenerationConfig.from_pretrained(model_path)
        except OSError:
            generation_config = None
        self.eos = set(_eos_ids(tokenizer, generation_config))

    def generate(
        self, prompt_ids: list[list[int]], settings: Sampling, desc: str = "generating"
    ) -> list[list[Generation]]:
        from vllm import SamplingParams

        greedy = settings.temperature == 0  # deterministic: one sample stands for all k
        structured = {}
        schema = getattr(settings, "json_schema", None)  # evaluators pass their own settings objects
        if schema is not None:
            from vllm.sampling_params import StructuredOutputsParams

            structured["structured_outputs"] = StructuredOutputsParams(json=schema)
        params = SamplingParams(
            n=1 if greedy else settings.samples,
            temperature=settings.temperature,
            top_p=1.0 if greedy else settings.top_p,
            max_tokens=settings.max_new_tokens,
            seed=None if self.request_seed is None else settings.seed,
            **structured,
        )
        log.info(f"{desc}: {len(prompt_ids)} prompts × {settings.samples} samples (vLLM)")
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], params)
        results = []
        for request in outputs:
            gens = [
                _finish(self.tokenizer, o.token_ids, self.eos, o.finish_reason == "length")
                for o in request.outputs
            ]
            results.append(gens * settings.samples if greedy else gens)
        return results


def default_backend() -> str:
    """vllm when it is installed and a GPU is visible, else hf."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return "hf"
    import torch

    return "vllm" if torch.cuda.is_available() else "hf"


def build_generator(
    model: str,
    *,
    backend: str | None = None,
    dtype: str = "auto",
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = True,
):
    """``(generator, tokenizer)`` for a model name or path (hub id, local dir, ``embedded:...`` alias)."""
    backend = backend or default_backend()
    if backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    cfg = ModelSpec(name_or_path=model, dtype=dtype)
    tokenizer = load_tokenizer(cfg, padding_side="left")
    if backend == "vllm":
        check_vllm("--backend vllm")
        check_model(resolve_model_path(model), "--model")
        return VLLMGenerator(resolve_model_path(model), tokenizer, dtype=dtype, seed=seed), tokenizer
    import torch

    policy = load_model(cfg)
    if torch.cuda.is_available():
        policy.to("cuda")
    return HFGenerator(policy, tokenizer, batch_size=batch_size, progress=progress), tokenizer
