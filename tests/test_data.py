"""Data: reading local files, preference adapters, tokenization and the ranked-preference collator."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from helpers import DEMO, SHARED

from posttrain.data.preference import DropReport, adapt_preferences, detect_format, parse_hh
from posttrain.data.sources import read_local
from posttrain.data.tokenize import RankedPreferenceCollator, render, tokenize_preferences, tokenize_record
from posttrain.errors import UserError

RECORDS = [
    {"prompt": "What is 2 + 2?", "chosen": "2 + 2 = 4.", "rejected": "2 + 2 = 5."},
    {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Rome."},
]
HH_FILE = SHARED / "datasets" / "hh-rlhf" / "harmless-base-test.jsonl.gz"


def jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


# --------------------------------------------------------------------------------------------------
# read_local


def test_read_jsonl(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(jsonl(RECORDS[:1]) + "\n  \n" + jsonl(RECORDS[1:]))  # blank lines are skipped
    assert read_local(str(path)) == RECORDS


def test_read_json_list_and_wrapped_list(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(RECORDS))
    assert read_local(str(path)) == RECORDS
    path.write_text(json.dumps({"data": RECORDS}))
    assert read_local(str(path)) == RECORDS


def test_read_jsonl_gz(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(gzip.compress(jsonl(RECORDS).encode()))
    assert read_local(str(path)) == RECORDS


def test_read_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(RECORDS), path)
    assert read_local(str(path)) == RECORDS
    gz = tmp_path / "d.parquet.gz"  # "optionally gzip-compressed" holds for parquet too
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert read_local(str(gz)) == RECORDS


def test_read_parquet_messages(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [json.loads(line) for line in (DEMO / "preferences_messages.jsonl").read_text().splitlines()]
    path = tmp_path / "m.parquet"
    pq.write_table(pa.Table.from_pylist(records), path)
    assert read_local(str(path)) == records


def test_invalid_json_line_is_named(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(jsonl(RECORDS) + '{"prompt": "x", \n')
    with pytest.raises(UserError, match=r"d\.jsonl: line 3: invalid JSON"):
        read_local(str(path))


def test_invalid_json_file(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[{"prompt": 1},\n')
    with pytest.raises(UserError, match=r"d\.json: invalid JSON at line"):
        read_local(str(path))


def test_non_object_record(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(jsonl(RECORDS) + "[1, 2]\n")
    with pytest.raises(UserError, match="record 3 is a list"):
        read_local(str(path))


@pytest.mark.parametrize("name", ["d.csv", "d.txt", "d.gz"])
def test_unsupported_suffix(tmp_path, name):
    path = tmp_path / name
    path.write_text("prompt,chosen,rejected\n")
    with pytest.raises(UserError, match="unsupported file type"):
        read_local(str(path))


def test_missing_file():
    with pytest.raises(UserError, match="data file not found: nowhere.jsonl"):
        read_local("nowhere.jsonl")


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("latin1.jsonl", '{"prompt": "caf\xe9"}\n'.encode("latin-1"), "cannot read"),
        ("plain.jsonl.gz", b'{"prompt": "x"}\n', "cannot read"),
        ("text.parquet", b"not a parquet file", "cannot read parquet"),
    ],
    ids=["latin1", "not-gzip", "not-parquet"],
)
def test_unreadable_files_are_user_errors(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError, match=match):
        read_local(str(path))


# --------------------------------------------------------------------------------------------------
# Adapters


def demo(name: str) -> list[dict]:
    return read_local(str(DEMO / name))


def test_plain_pairs():
    raw = demo("preferences.jsonl")
    assert detect_format(raw[0]) == "pairs"
    out, report = adapt_preferences(raw, "auto", "prefs")
    assert (report.read, report.kept, len(out)) == (160, 160, 160)
    assert out[0] == {
        "prompt": [user(raw[0]["prompt"])],
        "responses": [raw[0]["chosen"], raw[0]["rejected"]],
        "scores": [1.0, 0.0],
    }


def test_conversational_pairs():
    raw = demo("preferences_messages.jsonl")
    assert detect_format(raw[0]) == "pairs"
    out, report = adapt_preferences(raw, "auto", "msgs")
    assert report.kept == len(raw) == 16
    for rec, item in zip(raw, out):
        assert item["prompt"] == rec["chosen"][:-1] == rec["rejected"][:-1]
        assert item["prompt"][-1]["role"] == "user"
        assert item["responses"] == [rec["chosen"][-1]["content"], rec["rejected"][-1]["content"]]
        assert item["scores"] == [1.0, 0.0]


def test_trl_conversational_pairs():
    raw = [
        {"prompt": [user("Hi?")], "chosen": [assistant("Hello!")], "rejected": [assistant("Go away.")]},
        # UltraFeedback style: the prompt repeated inside chosen/rejected
        {
            "prompt": [user("2 + 2?")],
            "chosen": [user("2 + 2?"), assistant("4.")],
            "rejected": [user("2 + 2?"), assistant("5.")],
        },
    ]
    assert detect_format(raw[0]) == "pairs"
    out, report = adapt_preferences(raw, "auto", "trl")
    assert report.kept == 2
    assert out[0] == {"prompt": [user("Hi?")], "responses": ["Hello!", "Go away."], "scores": [1.0, 0.0]}
    assert out[1] == {"prompt": [user("2 + 2?")], "responses": ["4.", "5."], "scores": [1.0, 0.0]}


def test_hh_sample():
    raw = demo("hh_sample.jsonl")
    assert detect_format(raw[0]) == "hh"
    out, report = adapt_preferences(raw, "auto", "hh")
    assert report.kept == len(raw) == 16 and not report.dropped
    by_turns = {}
    for rec, item in zip(raw, out):
        by_turns.setdefault(len(item["prompt"]), []).append(item)
        chosen_last = rec["chosen"].rsplit("\n\nAssistant:", 1)[1].strip()
        rejected_last = rec["rejected"].rsplit("\n\nAssistant:", 1)[1].strip()
        assert item["responses"] == [chosen_last, rejected_last]
    assert sorted(by_turns) == [1, 3] and len(by_turns[1]) == len(by_turns[3]) == 8
    for item in by_turns[3]:
        assert [m["role"] for m in item["prompt"]] == ["user", "assistant", "user"]
        assert item["prompt"][2]["content"].startswith("Thanks!")
    for item in by_turns[1]:
        assert item["prompt"][0]["role"] == "user"


def test_parse_hh():
    text = "\n\nHuman: q1\n\nAssistant: a1\n\nHuman:  q2 \n\nAssistant: final"
    assert parse_hh(text) == [user("q1"), assistant("a1"), user("q2"), assistant("final")]


def test_ranked():
    raw = demo("ranked.jsonl")
    assert detect_format(raw[0]) == "ranked"
    out, report = adapt_preferences(raw, "auto", "ranked")
    assert report.kept == len(raw) == 40
    for rec, item in zip(raw, out):
        assert item == {
            "prompt": [user(rec["prompt"])],
            "responses": rec["responses"],
            "scores": rec["scores"],
        }
        assert sorted(item["scores"]) == [0.0, 0.5, 1.0]


def test_ranked_int_scores_become_floats():
    raw = [{"prompt": [user("q")], "responses": ["a", "b"], "scores": [2, 1]}]
    out, _ = adapt_preferences(raw, "ranked", "src")
    assert out[0]["scores"] == [2.0, 1.0] and all(isinstance(s, float) for s in out[0]["scores"])


def test_detect_format_unknown():
    with pytest.raises(UserError, match=r"src: record 1: cannot detect the data format"):
        adapt_preferences([{"question": "q", "answer": "a"}], "auto", "src")


def test_no_records():
    with pytest.raises(UserError, match="src: no records"):
        adapt_preferences([], "auto", "src")


def test_real_hh_file():
    if not HH_FILE.exists():
        pytest.skip(f"HH-RLHF test split not present at {HH_FILE}")
    raw = read_local(str(HH_FILE))[:200]
    assert detect_format(raw[0]) == "hh"
    out, report = adapt_preferences(raw, "auto", HH_FILE.name)
    assert report.read == 200 and report.kept == len(out) >= 190, report.summary()
    assert sum(report.dropped.values()) == 200 - report.kept
    assert all(item["prompt"] and item["prompt"][-1]["role"] == "user" for item in out)
    assert all(m["role"] in ("user", "assistant") for item in out for m in item["prompt"])
    assert any(len(item["prompt"]) > 1 for item in out)


# Drops: well-formed records that cannot train are counted by reason.


def test_drop_reasons_counted():
    pairs = [
        RECORDS[0],
        {"prompt": "q", "chosen": "   ", "rejected": "no"},
        {"prompt": "q", "chosen": "yes", "rejected": ""},
        {"prompt": [user("a")], "chosen": [user("b"), assistant("x")], "rejected": [assistant("y")]},
    ]
    out, report = adapt_preferences(pairs, "pairs", "p")
    assert len(out) == report.kept == 1 and report.read == 4
    assert report.dropped == {"empty response": 2, "prompt differs from chosen/rejected conversation": 1}

    ranked = [
        {"prompt": "q", "responses": ["a", "b", "c"], "scores": [1, 0, 1]},
        {"prompt": "q", "responses": ["a", "b", "c"], "scores": [0.5, 0.5, 0.5]},
        {"prompt": "q", "responses": ["a"], "scores": [1.0]},
        {"prompt": "q", "responses": ["a", ""], "scores": [1.0, 0.0]},
    ]
    out, report = adapt_preferences(ranked, "ranked", "r")
    assert report.kept == 1
    assert report.dropped == {"all scores tied": 1, "fewer than 2 responses": 1, "empty response": 1}

    hh = [
        {"chosen": "\n\nHuman: q\n\nAssistant: good", "rejected": "\n\nHuman: q\n\nAssistant: bad"},
        {"chosen": "\n\nHuman: q1\n\nAssistant: good", "rejected": "\n\nHuman: q2\n\nAssistant: bad"},
        {"chosen": "\n\nHuman: q\n\nAssistant: good", "rejected": "\n\nHuman: q\n\nAssistant:"},
        {"chosen": "\n\nHuman: q\n\nAssistant: good\n\nHuman: more", "rejected": "\n\nHuman: q"},
    ]
    out, report = adapt_preferences(hh, "auto", "hh")
    assert report.kept == 1 and out[0]["responses"] == ["good", "bad"]
    assert report.dropped == {
        "HH chosen and rejected do not share their prompt turns": 1,
        "empty response": 1,
        "HH transcript does not end with an Assistant turn": 1,
    }
    summary = report.summary()
    assert summary.startswith("hh: 1/4 records kept (dropped: ") and "1 empty response" in summary


def test_conversational_pairs_differing_history_dropped():
    raw = [
        {"chosen": [user("a"), assistant("x")], "rejected": [user("a"), assistant("y")]},
        {"chosen": [user("a"), assistant("x")], "rejected": [user("b"), assistant("y")]},
    ]
    out, report = adapt_preferences(raw, "pairs", "c")
    assert report.kept == 1
    assert report.dropped == {"chosen and rejected conversations differ before the last turn": 1}


# Malformed records raise, naming source, 1-based record number and field.


@pytest.mark.parametrize(
    ("fmt", "bad", "field"),
    [
        ("pairs", {"prompt": "q", "chosen": "a"}, "rejected"),
        ("pairs", {"prompt": "q", "chosen": None, "rejected": "b"}, "chosen"),
        ("pairs", {"chosen": "a", "rejected": "b"}, "prompt"),
        ("pairs", {"prompt": 3, "chosen": "a", "rejected": "b"}, "prompt"),
        ("pairs", {"prompt": "q", "chosen": ["a"], "rejected": "b"}, "chosen"),
        ("pairs", {"prompt": "q", "chosen": "a", "rejected": [user("q")]}, "rejected"),
        ("pairs", {"prompt": "q", "chosen": "a", "rejected": []}, "rejected"),
        ("hh", {"chosen": "\n\nHuman: q\n\nAssistant: a"}, "rejected"),
        ("hh", {"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": ["x"]}, "rejected"),
        ("ranked", {"responses": ["a", "b"], "scores": [1, 0]}, "prompt"),
        ("ranked", {"prompt": "q", "scores": [1, 0]}, "responses"),
        ("ranked", {"prompt": "q", "responses": "a b", "scores": [1, 0]}, "responses"),
        ("ranked", {"prompt": "q", "responses": ["a", 2], "scores": [1, 0]}, "responses"),
        ("ranked", {"prompt": "q", "responses": ["a", "b"], "scores": ["1", "0"]}, "scores"),
        ("ranked", {"prompt": "q", "responses": ["a", "b"], "scores": [True, False]}, "scores"),
        ("ranked", {"prompt": "q", "responses": ["a", "b"], "scores": [1.0, 0.5, 0.0]}, "scores"),
        ("ranked", {"prompt": "q", "responses": ["a", "b", "c"], "scores": [1.0]}, "responses"),
    ],
)
def test_malformed_record_raises(fmt, bad, field):
    good = {
        "pairs": RECORDS[0],
        "hh": {"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: b"},
        "ranked": {"prompt": "q", "responses": ["a", "b"], "scores": [1, 0]},
    }[fmt]
    with pytest.raises(UserError) as info:
        adapt_preferences([good, good, bad], "auto", "data/my.jsonl")
    msg = str(info.value)
    assert msg.startswith("data/my.jsonl: record 3: "), msg
    assert f"'{field}'" in msg, msg


# --------------------------------------------------------------------------------------------------
# Tokenization (tiny local tokenizer with a ChatML template)

PROMPT = [user("What is the capital of France?")]
RESPONSE = "The capital of France is Paris."


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_tokenize_matches_full_rendering(tiny_tokenizer):
    record = {"prompt": PROMPT, "responses": [RESPONSE, "It is Rome."], "scores": [1.0, 0.0]}
    item, notes = tokenize_record(record, tiny_tokenizer, max_length=256, max_prompt_length=128)
    assert notes == []
    assert item["scores"] == [1.0, 0.0] and len(item["response_ids"]) == 2
    assert item["prompt_ids"] == ids(tiny_tokenizer, render(tiny_tokenizer, PROMPT))
    assert tiny_tokenizer.decode(item["prompt_ids"]).endswith("<|im_start|>assistant\n")
    im_end = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    end_of_turn = ids(tiny_tokenizer, "<|im_end|>\n")  # the template closes a turn with "<|im_end|>\n"
    assert end_of_turn[0] == im_end
    for response, response_ids in zip(record["responses"], item["response_ids"]):
        full = tiny_tokenizer.apply_chat_template([*PROMPT, assistant(response)], tokenize=False)
        assert item["prompt_ids"] + response_ids == ids(tiny_tokenizer, full)
        assert response_ids[-len(end_of_turn) :] == end_of_turn
        assert im_end in response_ids
        assert tiny_tokenizer.decode(response_ids) == response + "<|im_end|>\n"


def test_tokenize_multiturn_prompt(tiny_tokenizer):
    prompt = [user("Hi."), assistant("Hello."), user("Capital of Peru?")]
    record = {"prompt": prompt, "responses": ["Lima.", "Quito."], "scores": [1.0, 0.0]}
    item, _ = tokenize_record(record, tiny_tokenizer, max_length=256, max_prompt_length=128)
    full = tiny_tokenizer.apply_chat_template([*prompt, assistant("Lima.")], tokenize=False)
    assert item["prompt_ids"] + item["response_ids"][0] == ids(tiny_tokenizer, full)


def test_prompt_left_truncation_keeps_last_tokens(tiny_tokenizer):
    prompt = [user("Tell me about numbers. " * 20 + "What is 2 + 2?")]
    full_prompt = ids(tiny_tokenizer, render(tiny_tokenizer, prompt))
    assert len(full_prompt) > 40
    record = {"prompt": prompt, "responses": ["4.", "5."], "scores": [1.0, 0.0]}
    item, notes = tokenize_record(record, tiny_tokenizer, max_length=64, max_prompt_length=16)
    assert notes == ["prompt truncated"]
    assert item["prompt_ids"] == full_prompt[-16:]
    assert tiny_tokenizer.decode(item["prompt_ids"]).endswith("2 + 2?<|im_end|>\n<|im_start|>assistant\n")
    # the responses are untouched
    full = tiny_tokenizer.apply_chat_template([*prompt, assistant("4.")], tokenize=False)
    assert item["response_ids"][0] == ids(tiny_tokenizer, full)[len(full_prompt) :]


def test_response_truncated_to_max_length(tiny_tokenizer):
    long = "The capital of France is Paris. " * 20
    record = {"prompt": PROMPT, "responses": [long, "Paris."], "scores": [1.0, 0.0]}
    prompt_len = len(ids(tiny_tokenizer, render(tiny_tokenizer, PROMPT)))
    max_length = prompt_len + 10
    item, notes = tokenize_record(record, tiny_tokenizer, max_length=max_length, max_prompt_length=prompt_len)
    assert notes == ["response truncated"]
    full = tiny_tokenizer.apply_chat_template([*PROMPT, assistant(long)], tokenize=False)
    assert item["response_ids"][0] == ids(tiny_tokenizer, full)[prompt_len:max_length]
    assert len(item["prompt_ids"]) + len(item["response_ids"][0]) == max_length
    assert tiny_tokenizer.decode(item["response_ids"][1]) == "Paris.<|im_end|>\n"  # short one kept whole


def test_overlong_drop_counted(tiny_tokenizer):
    long_prompt = [user("Tell me about numbers. " * 20)]
    long_response = "The capital of France is Paris. " * 20
    records = [
        {"prompt": PROMPT, "responses": ["Paris.", "Rome."], "scores": [1.0, 0.0]},
        {"prompt": PROMPT, "responses": ["Paris.", long_response], "scores": [1.0, 0.0]},
        {"prompt": long_prompt, "responses": ["Ok.", "No."], "scores": [1.0, 0.0]},
        {"prompt": PROMPT, "responses": [long_response, "Rome."], "scores": [1.0, 0.0]},
    ]
    report = DropReport(source="src", read=4, kept=4)
    out = tokenize_preferences(
        records,
        tiny_tokenizer,
        max_length=48,
        max_prompt_length=32,
        overlong="drop",
        report=report,
        progress=False,
    )
    assert len(out) == report.kept == 1
    assert report.dropped == {"over max_length": 2, "over max_prompt_length": 1}
    assert not report.truncated

    report = DropReport(source="src", read=4, kept=4)
    out = tokenize_preferences(
        records, tiny_tokenizer, max_length=48, max_prompt_length=32, report=report, progress=False
    )
    assert len(out) == report.kept == 4 and not report.dropped
    assert report.truncated == {"response truncated": 2, "prompt truncated": 1}
    assert all(len(r["prompt_ids"]) + max(map(len, r["response_ids"])) <= 48 for r in out)
    assert "4/4 records kept; 1 with prompt truncated, 2 with response truncated" in report.summary()


# --------------------------------------------------------------------------------------------------
# Collator

PAD = 99
FEATURES = [
    {"prompt_ids": [1, 2, 3], "response_ids": [[4, 5], [6]], "scores": [1.0, 0.0]},
    {"prompt_ids": [7], "response_ids": [[8, 9, 10], [11], [12, 13]], "scores": [0.5, 1.0, 0.0]},
]


def test_collator_batch():
    batch = RankedPreferenceCollator(pad_token_id=PAD)(FEATURES)
    P = PAD
    assert batch["input_ids"].tolist() == [
        [1, 2, 3, 4, 5],
        [1, 2, 3, 6, P],
        [7, 8, 9, 10, P],
        [7, 11, P, P, P],
        [7, 12, 13, P, P],
    ]
    assert batch["attention_mask"].tolist() == [
        [1, 1, 1, 1, 1],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
    ]
    assert batch["response_mask"].tolist() == [
        [0, 0, 0, 1, 1],
        [0, 0, 0, 1, 0],
        [0, 1, 1, 1, 0],
        [0, 1, 0, 0, 0],
        [0, 1, 1, 0, 0],
    ]
    # record 0: row 0 > row 1; record 1 (rows 2, 3, 4 scored 0.5, 1.0, 0.0): 2 > 4, 3 > 2, 3 > 4
    assert batch["better"].tolist() == [0, 2, 3, 3]
    assert batch["worse"].tolist() == [1, 4, 2, 4]
    assert batch["pair_record"].tolist() == [0, 1, 1, 1]
    assert batch["is_best"].tolist() == [True, False, False, True, False]
    for key in ("input_ids", "attention_mask", "response_mask", "better", "worse", "pair_record"):
        assert batch[key].dtype == torch.long, key
    assert batch["is_best"].dtype == torch.bool


def test_collator_pad_to_multiple_and_ties():
    features = [
        *FEATURES[:1],
        {"prompt_ids": [7], "response_ids": [[8], [9], [10]], "scores": [0.0, 1.0, 1.0]},
    ]
    batch = RankedPreferenceCollator(pad_token_id=PAD, pad_to_multiple_of=8)(features)
    assert batch["input_ids"].shape == (5, 8) and batch["response_mask"].shape == (5, 8)
    assert batch["input_ids"][0, 5:].tolist() == [PAD] * 3 and batch["attention_mask"][0, 5:].sum() == 0
    # tied responses form no pair; the first of the tied top scores is the BC target
    assert list(zip(batch["better"].tolist(), batch["worse"].tolist())) == [(0, 1), (3, 2), (4, 2)]
    assert batch["pair_record"].tolist() == [0, 1, 1]
    assert batch["is_best"].tolist() == [True, False, False, True, False]


def test_collator_on_tokenized_records(tiny_tokenizer):
    records, _ = adapt_preferences(demo("ranked.jsonl")[:2], "ranked", "ranked")
    records += adapt_preferences(demo("preferences.jsonl")[:1], "pairs", "pairs")[0]
    tokenized = tokenize_preferences(
        records, tiny_tokenizer, max_length=128, max_prompt_length=64, progress=False
    )
    batch = RankedPreferenceCollator(pad_token_id=tiny_tokenizer.pad_token_id)(tokenized)
    assert batch["input_ids"].shape[0] == 3 + 3 + 2
    assert len(batch["better"]) == 3 + 3 + 1
    # the response mask covers exactly the response tokens
    lengths = [len(r) for t in tokenized for r in t["response_ids"]]
    assert batch["response_mask"].sum(dim=1).tolist() == lengths
    assert batch["attention_mask"].sum(dim=1).tolist() == [
        len(t["prompt_ids"]) + n for t in tokenized for n in map(len, t["response_ids"])
    ]


def test_demo_files_are_jsonl():
    for path in sorted(Path(DEMO).glob("*.jsonl")):
        assert read_local(str(path)), path


def test_hub_loader_reads_a_local_dataset_repo(tmp_path):
    # The hub path goes through datasets.load_dataset; a local folder laid out like a hub dataset repo
    # exercises the same code offline (the recipe's `hub:` takes an id or such a folder).
    from posttrain.data.sources import read_hub, read_source
    from posttrain.recipe import DataSource

    repo = tmp_path / "prefs"
    (repo / "harmless-base").mkdir(parents=True)
    rows = [{"prompt": f"q{i}", "chosen": "good", "rejected": "bad"} for i in range(5)]
    (repo / "harmless-base" / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (repo / "harmless-base" / "test.jsonl").write_text(json.dumps(rows[0]) + "\n")
    assert read_hub(str(repo), None, "train", data_dir="harmless-base") == rows
    records, label = read_source(DataSource(hub=str(repo), data_dir="harmless-base", split="test"))
    assert records == rows[:1] and label.endswith(":test")
    records, _ = read_source(DataSource(hub=str(repo), data_dir="harmless-base", limit=2))
    assert len(records) == 2


def test_helpsteer3_preference_records():
    from posttrain.data.preference import adapt_preferences

    ctx = [{"role": "user", "content": "Hi"}]
    rows = [
        {"context": ctx, "response1": "a", "response2": "b", "overall_preference": -2},  # response1 better
        {"context": ctx, "response1": "a", "response2": "b", "overall_preference": 3},
        {"context": ctx, "response1": "a", "response2": "b", "overall_preference": 0},  # tie: dropped
    ]
    out, report = adapt_preferences(rows, "auto", "hs3")
    assert [r["scores"] for r in out] == [[2.0, -2.0], [-3.0, 3.0]]
    assert out[0]["prompt"] == ctx and report.dropped["all scores tied"] == 1
    with pytest.raises(UserError, match="record 1: field 'overall_preference' must be a number"):
        adapt_preferences([{**rows[0], "overall_preference": "much better"}], "helpsteer3", "hs3")
