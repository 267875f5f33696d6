"""Generate the DRPO quickstart task: short arithmetic word problems with verifiable answers.

Every problem is written from the templates and word lists in this file: no external dataset is read, only
the Python standard library is used, and all randomness goes through seeded ``random.Random`` instances,
so running the script twice writes byte-identical files.

Usage (from the repository root)::

    python data/drpo/make_arithmetic.py [--out-dir DIR]

Outputs (UTF-8 JSON Lines in posttrain's ``math`` format, next to this script unless ``--out-dir``):

* ``arithmetic_train.jsonl``  ``{"problem", "answer", "type"}``
* ``arithmetic_test.jsonl``   the same; no problem appears in both files

Label rule: ``answer`` is the integer result of the operation the template describes, computed here
(never typed by hand) and written as a string. Operands are drawn so that every answer is a positive
integer.

Difficulty is set for SmolLM2-135M-Instruct (the embedded model): one operation on small numbers (sums
of two numbers 2-9, differences from 6-15, products 2-5 × 2-5). Sampling at temperature 0.6 it gets about
a fifth of them right (21.9 % measured with the quickstart's suffix) and 15 of 20 problems got groups of 8
answers mixing right and wrong ones, which is what DRPO learns from; larger operands and two-step
problems brought it down to 9-16 % (see README.md).
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent
TRAIN_FILE = "arithmetic_train.jsonl"
TEST_FILE = "arithmetic_test.jsonl"
TRAIN_SEED = 11
TEST_SEED = 12
N_TRAIN = 400
N_TEST = 100

NAMES = [
    ("Tom", "he"),
    ("Sara", "she"),
    ("Ben", "he"),
    ("Lily", "she"),
    ("Omar", "he"),
    ("Mia", "she"),
    ("Leo", "he"),
    ("Ana", "she"),
    ("Sam", "he"),
    ("Nora", "she"),
    ("Ravi", "he"),
    ("Emma", "she"),
    ("Jack", "he"),
    ("Zoe", "she"),
    ("Ivan", "he"),
    ("Maya", "she"),
]
ITEMS = [
    "apples",
    "pencils",
    "stickers",
    "marbles",
    "books",
    "cookies",
    "stamps",
    "coins",
    "shells",
    "cards",
    "balloons",
    "oranges",
    "toy cars",
    "crayons",
    "buttons",
    "flowers",
]


def _two_people(rng: random.Random) -> tuple[tuple[str, str], tuple[str, str]]:
    first, second = rng.sample(NAMES, 2)
    return first, second


def add_buy(rng: random.Random) -> tuple[str, int]:
    (name, pron), item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    return (
        f"{name} has {a} {item}. {pron.capitalize()} buys {b} more. How many {item} does {pron} have now?",
        a + b,
    )


def sub_give(rng: random.Random) -> tuple[str, int]:
    (name, pron), item = rng.choice(NAMES), rng.choice(ITEMS)
    a = rng.randint(6, 15)
    b = rng.randint(2, a - 1)
    text = f"{name} has {a} {item}. {pron.capitalize()} gives {b} of them to a friend. How many {item} does {pron} have left?"
    return text, a - b


def add_together(rng: random.Random) -> tuple[str, int]:
    (n1, _), (n2, _) = _two_people(rng)
    item = rng.choice(ITEMS)
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    return f"{n1} has {a} {item} and {n2} has {b} {item}. How many {item} do they have together?", a + b


def more_than(rng: random.Random) -> tuple[str, int]:
    (n1, _), (n2, _) = _two_people(rng)
    item = rng.choice(ITEMS)
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    return f"{n1} has {a} {item}. {n2} has {b} more {item} than {n1}. How many {item} does {n2} have?", a + b


def multiply_bags(rng: random.Random) -> tuple[str, int]:
    (name, pron), item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randint(2, 5), rng.randint(2, 5)
    text = (
        f"{name} buys {a} bags of {item}. Each bag has {b} {item}. How many {item} does {pron} buy in total?"
    )
    return text, a * b


FAMILIES: dict[str, Callable[[random.Random], tuple[str, int]]] = {
    "add": add_buy,
    "subtract": sub_give,
    "together": add_together,
    "more_than": more_than,
    "multiply": multiply_bags,
}


def generate(n: int, seed: int, exclude: set[str] = frozenset()) -> list[dict]:
    """``n`` distinct problems, the families in turn, skipping any problem text in ``exclude``."""
    rng = random.Random(seed)
    kinds = list(FAMILIES)
    records, seen = [], set(exclude)
    while len(records) < n:
        kind = kinds[len(records) % len(kinds)]
        problem, answer = FAMILIES[kind](rng)
        if problem in seen:
            continue
        assert isinstance(answer, int) and answer > 0, (problem, answer)
        seen.add(problem)
        records.append({"problem": problem, "answer": str(answer), "type": kind})
    return records


def write_jsonl(path: Path, records: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    train = generate(N_TRAIN, TRAIN_SEED)
    test = generate(N_TEST, TEST_SEED, exclude={r["problem"] for r in train})
    assert not {r["problem"] for r in train} & {r["problem"] for r in test}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(args.out_dir / TRAIN_FILE, train)
    write_jsonl(args.out_dir / TEST_FILE, test)
    for name, records in ((TRAIN_FILE, train), (TEST_FILE, test)):
        counts = Counter(r["type"] for r in records)
        print(
            f"{args.out_dir / name}: {len(records)} problems ({', '.join(f'{k} {v}' for k, v in counts.items())})"
        )


if __name__ == "__main__":
    main()
