"""The RLBFF principle-data generator (data/rlbff/make_principles.py): check functions, committed files, GSM8K."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RLBFF = ROOT / "data" / "rlbff"
GSM8K = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "gsm8k"
LABELS = {"Yes", "No", "Partially"}


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_principles", RLBFF / "make_principles.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


mp = _load_generator()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- check functions on hand-written examples ------------------------------------------------------------


def test_numbers():
    assert mp.find_numbers("It costs $1,200 or 3.5 units, not -4.") == [1200.0, 3.5, -4.0]
    assert mp.last_number("The answer is 19.") == 19.0
    assert mp.last_number("No numbers here.") is None


def test_check_final_answer():
    assert mp.check_final_answer("12 + 7 = 19, so the answer is 19.", 19) == "Yes"
    assert mp.check_final_answer("Tom has 19 apples. 12 + 7 = 19.", 19) == "Yes"
    assert mp.check_final_answer("12 + 7 = 20, so the answer is 20.", 19) == "No"
    assert mp.check_final_answer("The answer is 19. Actually it is 21.", 19) == "No"
    assert mp.check_final_answer("I don't know.", 19) == "No"
    assert mp.check_final_answer("She makes $2,125.\n#### 2,125", 2125) == "Yes"


def test_check_answer_first():
    assert mp.check_answer_first("Tom has 19 apples now. 12 + 7 = 19.", 19) == "Yes"
    assert mp.check_answer_first("The answer is 19. Tom starts with 12.", 19) == "Yes"
    assert mp.check_answer_first("Tom starts with 12 apples and buys 7. 12 + 7 = 19.", 19) == "No"
    assert mp.check_answer_first("Tom has 20 apples now. 12 + 7 = 19.", 19) == "No"
    assert mp.check_answer_first("", 19) == "No"


def test_check_word_limit():
    assert mp.count_words("- one two\n- three") == 3
    ten = " ".join(["word"] * 10)
    assert mp.check_word_limit(ten, 10) == "Yes"
    assert mp.check_word_limit(ten + " more", 10) == "Partially"  # 11 <= floor(1.1 * 10)
    assert mp.check_word_limit(ten + " one more", 10) == "No"
    assert mp.check_word_limit(" ".join(["w"] * 55), 50) == "Partially"
    assert mp.check_word_limit(" ".join(["w"] * 56), 50) == "No"
    assert mp.check_word_limit("Short answer.", 20) == "Yes"


def test_check_bullet_list():
    assert mp.check_bullet_list("- one\n- two") == "Yes"
    assert mp.check_bullet_list("* one\n\n* two\n* three\n") == "Yes"
    assert mp.check_bullet_list("- only one") == "No"
    assert mp.check_bullet_list("1. one\n2. two") == "No"
    assert mp.check_bullet_list("One. Two. Three.") == "No"
    assert mp.check_bullet_list("-one\n-two") == "No"
    assert mp.check_bullet_list("Here you go:\n- one\n- two") == "Partially"
    assert mp.check_bullet_list("Intro:\n- one\n- two\nOutro.") == "No"


def test_check_no_repetition():
    assert mp.check_no_repetition("Bees make honey. Bees live in hives.") == "Yes"
    assert mp.check_no_repetition("Bees make honey. Bees live in hives. Bees make honey.") == "No"
    assert mp.check_no_repetition("Bees make honey.  bees make HONEY!") == "No"
    assert mp.check_no_repetition("- Bees make honey.\n- Bees make honey.") == "No"
    assert mp.check_no_repetition("Bees make honey. Bees make honey too.") == "Yes"


def test_check_no_apology():
    assert mp.check_no_apology("Bees make honey.") == "Yes"
    assert mp.check_no_apology("Sorry about that. Bees make honey.") == "No"
    assert mp.check_no_apology("I apologize for my last answer.") == "No"
    assert mp.check_no_apology("My apologies, here it is.") == "No"
    assert mp.check_no_apology("I apologised earlier.") == "No"
    assert mp.check_no_apology("Thanks for your patience.") == "Yes"


def test_check_language():
    assert mp.detect_language("Go to bed at the same time every night.") == "en"
    assert (
        mp.detect_language("Couchez-vous à la même heure chaque soir et gardez votre chambre calme.") == "fr"
    )
    assert mp.detect_language("Acuéstate a la misma hora cada noche y mantén tu habitación oscura.") == "es"
    assert (
        mp.detect_language("Geh jeden Abend zur gleichen Zeit ins Bett und halte dein Zimmer dunkel.") == "de"
    )
    assert mp.detect_language("42") is None
    assert mp.check_language("Drink water with every meal and before you go out.", "en") == "Yes"
    assert mp.check_language("Bebe agua durante todo el día y toma un vaso con cada comida.", "en") == "No"
    assert mp.check_language("Bebe agua durante todo el día y toma un vaso con cada comida.", "es") == "Yes"


def test_contrarian_checks():
    assert mp.check_working_first("Tom starts with 12 apples and buys 7. 12 + 7 = 19.", 19) == "Yes"
    assert mp.check_working_first("The answer is 19. Tom starts with 12.", 19) == "No"
    ten = " ".join(["word"] * 10)
    assert mp.check_longer_than(ten, 10) == "No"
    assert mp.check_longer_than(ten + " more", 10) is None  # the word_limit Partially band is skipped
    assert mp.check_longer_than(ten + " one more", 10) == "Yes"
    assert mp.check_prose("Bees make honey. Bees live in hives.") == "Yes"
    assert mp.check_prose("- Bees make honey.\n- Bees live in hives.") == "No"
    assert mp.check_prose("- Bees make honey. Bees live in hives.") is None  # a single bullet line
    assert mp.check_prose("1. Bees make honey.\n2. Bees live in hives.") is None
    assert mp.check_prose("Bees make honey.\nBees live in hives.") is None
    assert mp.check_prose("Here you go:\n- one\n- two") is None
    assert mp.check_repeats("Bees make honey. Bees make honey.") == "Yes"
    assert mp.check_repeats("Bees make honey. Bees live in hives.") == "No"
    assert mp.check_apology("Sorry about that. Bees make honey.") == "Yes"
    assert mp.check_apology("Bees make honey.") == "No"


# --- committed built-in files ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def committed() -> dict[str, list[dict]]:
    return {split: read_jsonl(RLBFF / f"principles_{split}.jsonl") for split in ("train", "test")}


def _valid_context(context) -> bool:
    if isinstance(context, str):
        return bool(context.strip())
    return (
        isinstance(context, list)
        and bool(context)
        and all(isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in context)
        and context[-1]["role"] == "user"
    )


def test_committed_records_are_well_formed(committed):
    for records in committed.values():
        assert records
        for r in records:
            assert {"context", "response", "principle", "fulfilment"} <= set(r)
            assert _valid_context(r["context"])
            assert isinstance(r["response"], str) and r["response"].strip()
            assert isinstance(r["principle"], str) and 0 < len(r["principle"].split()) <= 15
            assert r["fulfilment"] in LABELS
            assert r["family"] in mp.FAMILIES
            assert set(r) == {"context", "response", "principle", "fulfilment", "family"}
            assert mp.count_words(r["response"]) <= mp.MAX_RESPONSE_WORDS


def test_committed_sizes(committed):
    assert 900 <= len(committed["train"]) <= 1100
    assert 500 <= len(committed["test"]) <= 700
    principles = sum((RLBFF / f"principles_{s}.jsonl").stat().st_size for s in ("train", "test"))
    pairs = sum((RLBFF / f"principles_pairs_{s}.jsonl").stat().st_size for s in ("train", "test"))
    assert principles + pairs < 800_000
    assert pairs <= 200_000
    for split, low in (("train", 200), ("test", 150)):
        assert len(read_jsonl(RLBFF / f"principles_pairs_{split}.jsonl")) >= low


def test_train_test_prompts_do_not_overlap(committed):
    train = {mp.user_text(r["context"]) for r in committed["train"]}
    test = {mp.user_text(r["context"]) for r in committed["test"]}
    assert train and test and not train & test


def test_every_family_has_yes_and_no(committed):
    for split, records in committed.items():
        counts = Counter((r["family"], r["fulfilment"]) for r in records)
        for family in mp.FAMILIES:
            assert counts[family, "Yes"] > 0, (split, family)
            assert counts[family, "No"] > 0, (split, family)
        labels = Counter(r["fulfilment"] for r in records)
        assert 0.02 <= labels["Partially"] / len(records) <= 0.08
        assert 0.4 <= labels["Yes"] / (labels["Yes"] + labels["No"]) <= 0.6


def test_labels_recomputed_where_the_principle_carries_the_parameter(committed):
    """word_limit / language / format families: the principle text alone determines the check."""
    languages = {name: code for code, name in mp.LANGUAGE_NAMES.items()}
    for records in committed.values():
        for r in records:
            text, family = r["response"], r["family"]
            if family == "word_limit":
                (n,) = [int(t) for t in r["principle"].split() if t.isdigit()]
                assert mp.check_word_limit(text, n) == r["fulfilment"]
            elif family == "language":
                (lang,) = [code for name, code in languages.items() if name in r["principle"]]
                assert mp.check_language(text, lang) == r["fulfilment"]
            elif family == "bullet_list":
                assert mp.check_bullet_list(text) == r["fulfilment"]
            elif family == "no_repetition":
                assert mp.check_no_repetition(text) == r["fulfilment"]
            elif family == "no_apology":
                assert mp.check_no_apology(text) == r["fulfilment"]
            elif family == "contrarian_word_limit":
                (n,) = [int(t) for t in r["principle"].split() if t.isdigit()]
                assert mp.check_longer_than(text, n) == r["fulfilment"]
            elif family == "contrarian_language":
                (lang,) = [code for name, code in languages.items() if name in r["principle"]]
                assert lang != "en" and mp.check_language(text, lang) == r["fulfilment"]
            elif family == "contrarian_bullet_list":
                assert mp.check_prose(text) == r["fulfilment"]
            elif family == "contrarian_no_repetition":
                assert mp.check_repeats(text) == r["fulfilment"]
            elif family == "contrarian_no_apology":
                assert mp.check_apology(text) == r["fulfilment"]


def test_contrarian_labels_invert_the_standard_label_of_the_same_response(committed):
    """Every contrarian record has a standard record with the same context and response (the standard family
    of its name) whose label is the opposite; so the group's Yes and No responses swap."""
    for split, records in committed.items():
        standard = {
            (mp.context_key(r["context"]), r["response"], r["family"]): r["fulfilment"]
            for r in records
            if r["family"] not in mp.CONTRARIAN_FAMILIES
        }
        groups: dict[tuple[str, str], Counter] = {}
        for r in records:
            if r["family"] not in mp.CONTRARIAN_FAMILIES:
                continue
            base = r["family"].removeprefix("contrarian_")
            key = mp.context_key(r["context"])
            assert standard[key, r["response"], base] == mp.invert(r["fulfilment"]), (split, r)
            if base == "language":  # contrarian only where the user asked for no language (English target)
                assert "Please answer in" not in mp.user_text(r["context"])
            groups.setdefault((key, r["principle"]), Counter())[r["fulfilment"]] += 1
        assert all(c["Yes"] and c["No"] for c in groups.values()), split


def test_both_splits_have_every_contrarian_kind(committed):
    for split, records in committed.items():
        counts = Counter((r["family"], r["fulfilment"]) for r in records)
        for family in mp.CONTRARIAN_FAMILIES:
            assert counts[family, "Yes"] >= 3 and counts[family, "No"] >= 3, (split, family)
        contexts = {mp.context_key(r["context"]) for r in records}
        contrarian = {mp.context_key(r["context"]) for r in records if r["family"] in mp.CONTRARIAN_FAMILIES}
        # train: every group that can take a contrarian principle; test: about 40% of the contexts
        lo, hi = (0.75, 1.0) if split == "train" else (0.35, 0.45)
        assert lo <= len(contrarian) / len(contexts) <= hi, split


def test_contrarian_generation_leaves_standard_records_unchanged():
    """The contrarian records use their own random stream: dropping them gives the standard-only data."""
    for split in ("train", "test"):
        records = mp.build_builtin(split)
        rng = mp.random.Random(mp.SEEDS[split])
        counts = mp.N_GROUPS[split]
        standard = mp.arithmetic_groups(rng, split, counts["arith"]) + mp.language_groups(rng, split)
        for family in mp.TOPIC_CHECKS:
            standard += mp.topic_groups(rng, split, family, counts[family])
        assert [r for r in records if r["family"] not in mp.CONTRARIAN_FAMILIES] == standard


def test_held_out_phrasings_only_in_test(committed):
    train_principles = {r["principle"] for r in committed["train"]}
    test_principles = {r["principle"] for r in committed["test"]}
    for family, options in mp.PHRASINGS.items():
        held_out = re.compile(re.escape(options[-1]).replace(r"\{n\}", r"\d+").replace(r"\{lang\}", r"\w+"))
        assert not any(held_out.fullmatch(p) for p in train_principles), family
        assert any(held_out.fullmatch(p) for p in test_principles), family


def test_committed_pairs(committed):
    for split, records in committed.items():
        pairs = read_jsonl(RLBFF / f"principles_pairs_{split}.jsonl")
        assert pairs
        # (context, principle) -> {response: label}, standard families only: pairs are generic preferences
        groups: dict = {}
        for r in records:
            if r["family"] not in mp.CONTRARIAN_FAMILIES:
                groups.setdefault((mp.context_key(r["context"]), r["principle"]), {})[r["response"]] = r[
                    "fulfilment"
                ]
        seen = set()
        for p in pairs:
            assert set(p) == {"prompt", "chosen", "rejected"}
            assert isinstance(p["prompt"], list) and p["chosen"] != p["rejected"]
            key = mp.context_key(p["prompt"])
            assert any(
                k == key and g.get(p["chosen"]) == "Yes" and g.get(p["rejected"]) == "No"
                for (k, _), g in groups.items()
            ), p
            seen.add((key, p["chosen"], p["rejected"]))
        assert not any((k, r, c) in seen for k, c, r in seen), "contradictory pair"
        # one pair per context that has a standard Yes and No response
        with_pair = {k for (k, _), g in groups.items() if {"Yes", "No"} <= set(g.values())}
        assert {k for k, _, _ in seen} <= with_pair and len(seen) >= 0.9 * len(with_pair), split


def test_regenerates_byte_identically(tmp_path):
    assert mp.main(["--out-dir", str(tmp_path)]) == 0
    for name in ("principles_train", "principles_test", "principles_pairs_train", "principles_pairs_test"):
        assert (tmp_path / f"{name}.jsonl").read_bytes() == (RLBFF / f"{name}.jsonl").read_bytes(), name


def test_generated_dir_is_ignored():
    assert "generated/" in (RLBFF / ".gitignore").read_text().split()


# --- GSM8K source ------------------------------------------------------------------------------------------


def test_gsm8k_perturbation_without_data():
    import random

    solution = "She sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\nShe makes 9 * 2 = $<<9*2=18>>18.\n#### 1,018"
    clean, perturbed, answer = mp.perturb_gsm8k(random.Random(0), solution)
    assert answer == 1018 and "<<" not in clean and "<<" not in perturbed
    assert clean.endswith("#### 1,018")
    assert mp.check_final_answer(clean, answer) == "Yes"
    assert mp.check_final_answer(perturbed, answer) == "No"
    assert perturbed.splitlines()[0] == clean.splitlines()[0]


@pytest.mark.skipif(not GSM8K.is_dir(), reason=f"GSM8K not found at {GSM8K} (optional source)")
def test_gsm8k_mode(tmp_path):
    limit = 6
    assert mp.main(["--gsm8k", str(GSM8K), "--limit", str(limit), "--out-dir", str(tmp_path), "--pairs"]) == 0
    for split in ("train", "test"):
        rows = read_jsonl(GSM8K / f"{split}.jsonl")[:limit]
        truth = {row["question"]: mp.parse_number(row["answer"].split("####")[-1].strip()) for row in rows}
        records = read_jsonl(tmp_path / f"principles_gsm8k_{split}.jsonl")
        assert len(records) == 2 * limit
        by_question: dict[str, dict[str, str]] = {}
        for r in records:
            assert isinstance(r["context"], str) and r["fulfilment"] in {"Yes", "No"}
            final = mp.parse_number(r["response"].split("####")[-1].strip())
            assert (final == truth[r["context"]]) == (r["fulfilment"] == "Yes")
            assert mp.check_final_answer(r["response"], truth[r["context"]]) == r["fulfilment"]
            by_question.setdefault(r["context"], {})[r["fulfilment"]] = r["response"]
        assert set(by_question) == set(truth)
        assert all(set(labels) == {"Yes", "No"} for labels in by_question.values())
        pairs = read_jsonl(tmp_path / f"principles_gsm8k_pairs_{split}.jsonl")
        assert len(pairs) == limit
        for p in pairs:
            assert p["chosen"] == by_question[p["prompt"]]["Yes"]
            assert p["rejected"] == by_question[p["prompt"]]["No"]
    assert not (tmp_path / "principles_train.jsonl").exists()  # the built-in files are not touched
