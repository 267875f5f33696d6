"""Generate principle-following ("RLBFF") reward-model data whose labels come from programmatic checks.

Every record asks whether a ``response`` to a ``context`` satisfies a natural-language ``principle``, and its
``fulfilment`` label ("Yes" / "No" / "Partially") is computed by running a small, verifiable check function on
the actual response text (see the ``check_*`` functions below), never assumed from how the response was built.
Contexts are also judged under a *contrarian* principle (families ``contrarian_*``): the same responses under a
principle whose label is the inverse of the standard check ("The response is longer than 20 words."), so the
response a generic judge prefers is the No one. ``CONTRARIAN_SHARE`` sets how many: in train every group whose
responses get both labels under its contrarian principle (81% of the committed train contexts), in test 40%
of each family's groups. The record format matches
HelpSteer3-Principle, plus one metadata field::

    {"context": [{"role": "user", "content": "..."}], "response": "...", "principle": "...",
     "fulfilment": "Yes", "family": "word_limit"}

Two sources:

* **built-in** (default): prompts and responses written from the templates and hand-written tables in this
  file; no external data, stdlib only, fixed seeds, so re-running reproduces byte-identical files. The test
  split uses different topics, word-problem templates, tip items and names than train, plus one held-out
  phrasing per principle family. Writes, next to this script (or to ``--out-dir``)::

      principles_train.jsonl  principles_test.jsonl               principle records
      principles_pairs_train.jsonl  principles_pairs_test.jsonl   {"prompt", "chosen", "rejected"} pairs

* **GSM8K** (``--gsm8k DIR``, DIR holds ``train.jsonl`` / ``test.jsonl`` with ``{"question", "answer"}``):
  a final-answer correctness family, the reference solution (Yes) against a copy whose final number and
  ``#### n`` line are changed (No). Written to ``--out-dir`` (default ``data/rlbff/generated/``, git-ignored),
  never to the committed files; ``--pairs`` adds the matching preference pairs, ``--limit`` caps the number
  of questions read per split.

Usage (from the repository root)::

    python data/rlbff/make_principles.py                                   # built-in, committed files
    python data/rlbff/make_principles.py --gsm8k ../shared/datasets/gsm8k --pairs --limit 500

Principle families and their exact label rules are documented in ``data/rlbff/README.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_GSM8K_OUT = HERE / "generated"

LABELS = ("Yes", "No", "Partially")
MAX_RESPONSE_WORDS = 80
WORD_LIMITS = (10, 20, 30, 50)
PARTIAL_WORD_SLACK = 0.10  # word_limit: over the limit by at most 10% of N -> "Partially"

SEEDS = {"train": 11, "test": 22}
CONTRARIAN_SEEDS = {"train": 111, "test": 122}  # a separate stream, so the standard records do not change
GSM8K_SEED = 33

# Groups (contexts) per family and split. Arithmetic problems feed two families (final_answer, answer_first).
N_GROUPS = {
    "train": {"arith": 28, "word_limit": 36, "bullet_list": 36, "no_repetition": 36, "no_apology": 36},
    "test": {"arith": 24, "word_limit": 30, "bullet_list": 30, "no_repetition": 30, "no_apology": 30},
}
P_SECONDARY = 0.15  # chance that a topic group's responses are also labelled under another family's principle
# Share of each family's groups (contexts) that also get a contrarian principle (see CONTRARIAN_CHECKS).
# Train: every group that has both labels under its contrarian principle, so that no response predicts its
# label without the principle. Test: a mix in which the generic preference is right on most pairs.
CONTRARIAN_SHARE = {"train": 1.0, "test": 0.4}

FAMILIES = (
    "final_answer",
    "answer_first",
    "word_limit",
    "bullet_list",
    "language",
    "no_repetition",
    "no_apology",
)
# Contrarian families: the same contexts and responses as the standard family in the name, under a principle
# whose Yes response is the one a generic "which response is better" judge would not prefer.
CONTRARIAN_BASE = ("answer_first", "word_limit", "bullet_list", "language", "no_repetition", "no_apology")
CONTRARIAN_FAMILIES = tuple(f"contrarian_{f}" for f in CONTRARIAN_BASE)
FAMILIES += CONTRARIAN_FAMILIES

# ---------------------------------------------------------------------------------------------------------
# Check functions: each takes the response text (plus the principle's parameter) and returns a label.
# ---------------------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?")
_WORD = re.compile(r"[^\W_]", re.UNICODE)
_LETTERS = re.compile(r"[^\W\d_]+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_BULLET = ("- ", "* ")
_APOLOGY = re.compile(r"\b(sorry|apologi[sz](?:e|es|ed|ing)|apology|apologies)\b", re.IGNORECASE)


def parse_number(text: str) -> float:
    """Parse a number as written in text: ``"1,200"`` -> 1200.0, ``"-3.5"`` -> -3.5."""
    return float(text.replace(",", ""))


def find_numbers(text: str) -> list[float]:
    """All numbers in ``text``, in order (thousands separators allowed, a trailing period is not a decimal)."""
    return [parse_number(m.group()) for m in _NUMBER.finditer(text)]


def last_number(text: str) -> float | None:
    numbers = find_numbers(text)
    return numbers[-1] if numbers else None


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def yes_no(ok: bool) -> str:
    return "Yes" if ok else "No"


def check_final_answer(response: str, answer: float) -> str:
    """final_answer: Yes iff the last number in the response equals the true answer."""
    value = last_number(response)
    return yes_no(value is not None and _same(value, answer))


def split_sentences(text: str) -> list[str]:
    """Sentences: split after ``.``/``!``/``?`` followed by whitespace, and at line breaks."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def check_answer_first(response: str, answer: float) -> str:
    """answer_first: Yes iff the first sentence contains the correct value as a number."""
    sentences = split_sentences(response)
    return yes_no(bool(sentences) and any(_same(n, answer) for n in find_numbers(sentences[0])))


def count_words(text: str) -> int:
    """Whitespace-separated tokens that contain at least one letter or digit (a lone ``-`` is not a word)."""
    return sum(1 for token in text.split() if _WORD.search(token))


def check_word_limit(response: str, limit: int) -> str:
    """word_limit: Yes if words <= N; Partially if N < words <= floor(1.1 N); otherwise No."""
    words = count_words(response)
    if words <= limit:
        return "Yes"
    if words <= math.floor(limit * (1 + PARTIAL_WORD_SLACK)):
        return "Partially"
    return "No"


def is_bullet(line: str) -> bool:
    return line.lstrip().startswith(_BULLET)


def check_bullet_list(response: str) -> str:
    """bullet_list: Yes if >= 2 non-empty lines and every one starts with "- " or "* " (after indentation);
    Partially if >= 2 bullet lines and exactly one other non-empty line (e.g. an intro); otherwise No."""
    lines = [line for line in response.splitlines() if line.strip()]
    bullets = sum(1 for line in lines if is_bullet(line))
    if len(lines) >= 2 and bullets == len(lines):
        return "Yes"
    if bullets >= 2 and len(lines) - bullets == 1:
        return "Partially"
    return "No"


def _normalize_sentence(sentence: str) -> str:
    return " ".join(sentence.lower().rstrip(".!?").split())


def check_no_repetition(response: str) -> str:
    """no_repetition: No iff two sentences are identical after lower-casing, collapsing whitespace and
    dropping end punctuation."""
    normalized = [_normalize_sentence(s) for s in split_sentences(response)]
    normalized = [s for s in normalized if s]
    return yes_no(len(set(normalized)) == len(normalized))


def check_no_apology(response: str) -> str:
    """no_apology: No iff the response contains sorry / apologize / apologise / apology / apologies (any
    inflection, case-insensitive, whole word)."""
    return yes_no(_APOLOGY.search(response) is None)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Function words that occur in exactly one of the four languages (words shared between them, such as
# "la", "de", "en", "que", "un", "du", "se", "tu", "in", "an", "am", "was", "so", are deliberately left out).
STOPWORDS = {
    "en": _words(
        "the and is are of to you your it for with when what that this at on be before every each than not or "
        "from they them their by as were has have can will into about after many most very there which its "
        "more while all"
    ),
    "fr": _words(
        "le les et est des une vous votre vos pour avec dans sur pas qui au aux ce il ne quand chaque par l d n "
        "qu jamais peu tout toutes fois très ou sont leur avoir être après avant beaucoup encore pendant"
    ),
    "es": _words(
        "el los las y es del una para con por su sus tus antes cada lo al muy cuando nunca más mientras casi "
        "otra otro hasta pero esté sí ti contigo mucha mucho unos después todo vez"
    ),
    "de": _words(
        "der die das und ist nicht ein eine einer einem einen mit für zu auf den dem im sie du dich dir dein "
        "deine deinen ihr ihn ihnen vor jeden jede oder wenn nach bei beim noch zum zur sich wie aus nie immer "
        "etwas viel ins gegen"
    ),
}
LANGUAGE_NAMES = {"en": "English", "fr": "French", "es": "Spanish", "de": "German"}


def detect_language(text: str) -> str | None:
    """The language whose stopwords occur most often in ``text``; None if there are none or a tie."""
    tokens = [t.lower() for t in _LETTERS.findall(text)]
    counts = {lang: sum(1 for t in tokens if t in words) for lang, words in STOPWORDS.items()}
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if ranked[0][1] == 0 or ranked[0][1] == ranked[1][1]:
        return None
    return ranked[0][0]


def check_language(response: str, lang: str) -> str:
    """language: Yes iff :func:`detect_language` returns the principle's language."""
    return yes_no(detect_language(response) == lang)


def invert(label: str) -> str:
    """Yes <-> No (Partially has no inverse)."""
    return {"Yes": "No", "No": "Yes"}[label]


# Contrarian checks: the inverse of a standard check, or None where the inverse is not well defined (those
# responses are not labelled under the contrarian principle).
_NUMBERED = re.compile(r"\s*\d+[.)]\s")


def check_working_first(response: str, answer: float) -> str:
    """contrarian_answer_first: the inverse of :func:`check_answer_first` (Yes iff the first sentence does
    not contain the correct value). Only applied to responses labelled under answer_first."""
    return invert(check_answer_first(response, answer))


def check_longer_than(response: str, limit: int) -> str | None:
    """contrarian_word_limit: Yes if words > floor(1.1 N); No if words <= N; None in between (the word_limit
    Partially band is not labelled)."""
    label = check_word_limit(response, limit)
    return None if label == "Partially" else invert(label)


def check_prose(response: str) -> str | None:
    """contrarian_bullet_list: Yes if the response is one non-empty line that does not start with a bullet
    ("- ", "* ") or a number marker ("1. ", "1) "); No if :func:`check_bullet_list` is Yes (every line is a
    bullet); None otherwise (numbered lists, several plain lines, a single bullet line, intro + bullets)."""
    lines = [line for line in response.splitlines() if line.strip()]
    if len(lines) == 1 and not is_bullet(lines[0]) and not _NUMBERED.match(lines[0]):
        return "Yes"
    return "No" if check_bullet_list(response) == "Yes" else None


def check_repeats(response: str) -> str:
    """contrarian_no_repetition: the inverse of :func:`check_no_repetition`."""
    return invert(check_no_repetition(response))


def check_apology(response: str) -> str:
    """contrarian_no_apology: the inverse of :func:`check_no_apology`."""
    return invert(check_no_apology(response))


# ---------------------------------------------------------------------------------------------------------
# Principle phrasings. The last phrasing of each family is held out: it only appears in the test split.
# ---------------------------------------------------------------------------------------------------------

PHRASINGS = {
    "final_answer": [
        "The final answer is correct.",
        "The response gets the final answer right.",
        "The response ends with the correct result.",
        "The last number given is the right answer.",
        "The response arrives at the correct final answer.",
    ],
    "answer_first": [
        "The response states the final answer in its first sentence.",
        "The first sentence gives the correct answer.",
        "The response leads with the correct answer.",
        "The correct answer comes first, before any working.",
        "The response opens with the correct answer.",
    ],
    "word_limit": [
        "The response is at most {n} words long.",
        "Is at most {n} words long.",
        "The response uses no more than {n} words.",
        "The response does not exceed {n} words.",
        "The response is {n} words or fewer.",
    ],
    "bullet_list": [
        "The response is formatted as a bulleted list.",
        "The response is a bullet-point list.",
        "Every line of the response is a bullet point.",
        "The response uses a bulleted list format.",
        "The answer is given as a list of bullet points.",
    ],
    "language": [
        "The response is written in {lang}.",
        "The response is in {lang}.",
        "The whole response uses {lang}.",
        "The reply is written entirely in {lang}.",
        "The response uses the {lang} language.",
    ],
    "no_repetition": [
        "The response does not repeat the same sentence.",
        "No sentence appears twice in the response.",
        "Every sentence in the response is different.",
        "The response avoids repeating any sentence.",
        "The response contains no duplicated sentences.",
    ],
    "no_apology": [
        "The response does not apologize.",
        "The response contains no apology.",
        "The response avoids saying sorry.",
        "There is no apology in the response.",
        "The response does not say sorry or apologize.",
    ],
    "contrarian_answer_first": [
        "The response shows its working before giving the final answer.",
        "The working comes before the final answer.",
        "The response explains the steps first and gives the answer last.",
        "The response does not open with the correct answer.",
        "The response builds up to the answer instead of leading with it.",
    ],
    "contrarian_word_limit": [
        "The response is longer than {n} words.",
        "The response uses more than {n} words.",
        "The response has over {n} words.",
        "The response exceeds {n} words.",
        "The response is more than {n} words long.",
    ],
    "contrarian_bullet_list": [
        "The response is written as plain prose, without bullet points.",
        "The response is a single paragraph of prose.",
        "The response is plain running text, not a list.",
        "The response avoids bullet points and uses one paragraph.",
        "The response is one paragraph with no bullet points.",
    ],
    "contrarian_no_repetition": [
        "The response repeats at least one sentence.",
        "Some sentence appears twice in the response.",
        "The response contains a repeated sentence.",
        "At least one sentence is said twice.",
        "The response says the same sentence more than once.",
    ],
    "contrarian_no_apology": [
        "The response includes an apology.",
        "The response apologizes.",
        "The response says sorry.",
        "There is an apology in the response.",
        "The response contains an apology to the user.",
    ],
}
# Same principle text as the language family; only the context (no language requested) makes it contrarian.
PHRASINGS["contrarian_language"] = PHRASINGS["language"]


def phrasing(rng: random.Random, family: str, split: str, **params) -> str:
    options = PHRASINGS[family] if split == "test" else PHRASINGS[family][:-1]
    return rng.choice(options).format(**params)


# ---------------------------------------------------------------------------------------------------------
# Hand-written tables
# ---------------------------------------------------------------------------------------------------------

NAMES = {
    "train": [
        "Tom",
        "Maria",
        "Ali",
        "Sofia",
        "Ken",
        "Lena",
        "Omar",
        "Grace",
        "Ivan",
        "Priya",
        "Jack",
        "Nora",
    ],
    "test": ["Ravi", "Elena", "Hugo", "Mei", "Sam", "Zara"],
}


@dataclass(frozen=True)
class WordProblem:
    """An arithmetic word-problem template. ``make`` draws operands; ``solve`` is the true answer."""

    name: str
    question: str
    restate: str  # restates the problem without the answer
    work: str  # the computation, formatted with the operands and a result {v}
    answer: str  # a sentence stating the result {v}
    make: Callable[[random.Random], dict]
    solve: Callable[[dict], int]
    wrong_op: Callable[[dict], tuple[str, int]]  # (work string with a wrong operation, its result)


def _ab(lo_a: int, hi_a: int, lo_b: int, hi_b: int) -> Callable[[random.Random], dict]:
    return lambda rng: {"a": rng.randint(lo_a, hi_a), "b": rng.randint(lo_b, hi_b)}


def _div(lo_b: int, hi_b: int, lo_k: int, hi_k: int) -> Callable[[random.Random], dict]:
    def make(rng: random.Random) -> dict:
        b, k = rng.randint(lo_b, hi_b), rng.randint(lo_k, hi_k)
        return {"a": b * k, "b": b}

    return make


WORD_PROBLEMS = {
    "train": [
        WordProblem(
            "apples",
            "{name} has {a} apples and buys {b} more. How many apples does {name} have now?",
            "{name} starts with {a} apples and buys {b} more.",
            "{a} + {b} = {v}",
            "{name} has {v} apples now.",
            _ab(5, 60, 3, 40),
            lambda p: p["a"] + p["b"],
            lambda p: ("{a} - {b} = {v}", p["a"] - p["b"]),
        ),
        WordProblem(
            "stickers",
            "{name} had {a} stickers and gave {b} of them to a friend. How many stickers does {name} have left?",
            "{name} had {a} stickers and gave away {b}.",
            "{a} - {b} = {v}",
            "{name} has {v} stickers left.",
            lambda rng: (lambda b: {"a": b + rng.randint(4, 50), "b": b})(rng.randint(3, 30)),
            lambda p: p["a"] - p["b"],
            lambda p: ("{a} + {b} = {v}", p["a"] + p["b"]),
        ),
        WordProblem(
            "pencils",
            "A box holds {a} pencils. How many pencils are in {b} boxes?",
            "Each box holds {a} pencils and there are {b} boxes.",
            "{a} * {b} = {v}",
            "There are {v} pencils in total.",
            _ab(6, 24, 3, 12),
            lambda p: p["a"] * p["b"],
            lambda p: ("{a} + {b} = {v}", p["a"] + p["b"]),
        ),
        WordProblem(
            "cookies",
            "{a} cookies are shared equally among {b} children. How many cookies does each child get?",
            "There are {a} cookies for {b} children.",
            "{a} / {b} = {v}",
            "Each child gets {v} cookies.",
            _div(2, 9, 3, 12),
            lambda p: p["a"] // p["b"],
            lambda p: ("{a} - {b} = {v}", p["a"] - p["b"]),
        ),
        WordProblem(
            "train",
            "A train travels at {a} km per hour for {b} hours. How far does it go?",
            "The train covers {a} km every hour for {b} hours.",
            "{a} * {b} = {v}",
            "The train goes {v} km.",
            lambda rng: {"a": rng.choice(range(40, 130, 5)), "b": rng.randint(2, 6)},
            lambda p: p["a"] * p["b"],
            lambda p: ("{a} + {b} = {v}", p["a"] + p["b"]),
        ),
        WordProblem(
            "pages",
            "{name} reads {a} pages on Monday and {b} pages on Tuesday. How many pages does {name} read in total?",
            "{name} reads {a} pages and then {b} more.",
            "{a} + {b} = {v}",
            "{name} reads {v} pages in total.",
            _ab(8, 70, 8, 70),
            lambda p: p["a"] + p["b"],
            lambda p: ("{a} * 2 = {v}", p["a"] * 2),
        ),
    ],
    "test": [
        WordProblem(
            "shelf",
            "A shelf holds {a} books. {name} adds {b} books and then removes {c}. How many books are on the shelf now?",
            "The shelf starts with {a} books, gains {b} and loses {c}.",
            "{a} + {b} - {c} = {v}",
            "There are {v} books on the shelf now.",
            lambda rng: {"a": rng.randint(10, 60), "b": rng.randint(3, 20), "c": rng.randint(2, 9)},
            lambda p: p["a"] + p["b"] - p["c"],
            lambda p: ("{a} + {b} + {c} = {v}", p["a"] + p["b"] + p["c"]),
        ),
        WordProblem(
            "tickets",
            "Each concert ticket costs {a} dollars. How much do {b} tickets cost?",
            "One ticket costs {a} dollars and we need {b} of them.",
            "{b} * {a} = {v}",
            "The tickets cost {v} dollars.",
            _ab(12, 45, 2, 8),
            lambda p: p["a"] * p["b"],
            lambda p: ("{a} + {b} = {v}", p["a"] + p["b"]),
        ),
        WordProblem(
            "savings",
            "{name} saves {a} dollars every week. How much has {name} saved after {b} weeks?",
            "{name} puts away {a} dollars a week for {b} weeks.",
            "{a} * {b} = {v}",
            "{name} has saved {v} dollars.",
            _ab(5, 30, 3, 10),
            lambda p: p["a"] * p["b"],
            lambda p: ("{a} + {b} = {v}", p["a"] + p["b"]),
        ),
        WordProblem(
            "eggs",
            "A farmer collects {a} eggs and packs them in cartons of {b}. How many full cartons does the farmer get?",
            "There are {a} eggs and each carton holds {b}.",
            "{a} / {b} = {v}",
            "The farmer fills {v} cartons.",
            _div(6, 12, 3, 9),
            lambda p: p["a"] // p["b"],
            lambda p: ("{a} - {b} = {v}", p["a"] - p["b"]),
        ),
    ],
}

# Short encyclopedic facts, one topic per entry. Train and test topics are disjoint.
TOPICS = {
    "train": {
        "bees": [
            "Bees collect nectar and pollen from flowers.",
            "Honeybees live in colonies ruled by a single queen.",
            "Worker bees do almost all of the work in the hive.",
            "Bees help plants grow by spreading pollen between flowers.",
            "A honeybee can visit hundreds of flowers in one trip.",
            "Bees turn nectar into honey and store it in wax cells.",
            "Many wild bee species live alone rather than in hives.",
            "Bees share the location of food with a waggle dance.",
        ],
        "the Moon": [
            "The Moon orbits the Earth about once every month.",
            "Its gravity is the main cause of ocean tides.",
            "The Moon has no real atmosphere to trap heat.",
            "Astronauts first walked on the Moon in 1969.",
            "The same side of the Moon always faces the Earth.",
            "Its surface is covered in craters and fine grey dust.",
            "The Moon shines because it reflects light from the Sun.",
            "Its phases change as we see more or less of its sunlit side.",
        ],
        "coffee": [
            "Coffee is brewed from the roasted seeds of the coffee plant.",
            "The plant grows best in warm, rainy highlands near the equator.",
            "Caffeine in coffee can make people feel more alert.",
            "Light roasts taste brighter while dark roasts taste more bitter.",
            "Espresso is made by forcing hot water through fine grounds.",
            "Brazil produces more coffee than any other country.",
            "Fresh beans keep their flavor longer in an airtight container.",
            "Drinking coffee late in the day can disturb sleep.",
        ],
        "volcanoes": [
            "A volcano is an opening where molten rock reaches the surface.",
            "Molten rock is called magma underground and lava above ground.",
            "Many volcanoes sit along the edges of tectonic plates.",
            "Some eruptions are explosive while others pour out slow lava flows.",
            "Volcanic ash can ground airplanes and damage crops.",
            "Over time, volcanic soil becomes very fertile for farming.",
            "Hawaii was built by volcanoes rising from the sea floor.",
            "Scientists watch for small earthquakes that warn of eruptions.",
        ],
        "bicycles": [
            "A bicycle turns pedal power into motion through a chain.",
            "Riding a bike is a cheap and healthy way to travel.",
            "Gears let riders climb hills without pedaling too hard.",
            "A helmet greatly lowers the risk of head injury.",
            "Tires should be checked for the right pressure before a ride.",
            "Many cities now have bike lanes separated from cars.",
            "Bicycles produce no exhaust, so they keep the air clean.",
            "A regular drop of oil keeps the chain running smoothly.",
        ],
        "libraries": [
            "Libraries lend books to anyone with a library card.",
            "Many libraries also offer free internet access and computers.",
            "Librarians help people find reliable information.",
            "Quiet reading rooms make libraries good places to study.",
            "Some libraries lend tools, games, and musical instruments.",
            "Story hours for children encourage a love of reading.",
            "Old libraries often keep rare maps and manuscripts.",
            "Returning books on time lets others borrow them too.",
        ],
        "rainforests": [
            "Rainforests grow in warm places with heavy rain all year.",
            "They are home to more than half of the world's animal species.",
            "Tall trees form a thick canopy that blocks most sunlight.",
            "Many medicines come from plants first found in rainforests.",
            "The Amazon is the largest rainforest on Earth.",
            "Rainforests absorb large amounts of carbon dioxide.",
            "Logging and farming have destroyed huge areas of forest.",
            "Frogs, monkeys, and parrots live high in the branches.",
        ],
        "chess": [
            "Chess is a strategy game played on a board of 64 squares.",
            "Each player starts the game with sixteen pieces.",
            "The goal is to checkmate the opposing king.",
            "The queen is the most powerful piece on the board.",
            "Knights move in an L shape and can jump over pieces.",
            "Controlling the center early is a common opening plan.",
            "Players often study famous games to improve.",
            "A game can end in a draw when neither side can win.",
        ],
        "bread": [
            "Bread is made from flour, water, salt, and usually yeast.",
            "Yeast releases gas that makes the dough rise.",
            "Kneading builds gluten, which gives bread its chewy texture.",
            "Sourdough uses wild yeast from a fermented starter.",
            "Flatbreads like tortillas are baked without rising.",
            "Bread goes stale faster in the fridge than at room temperature.",
            "Whole wheat bread keeps the bran and the germ of the grain.",
            "A hot oven gives the loaf a crisp golden crust.",
        ],
        "penguins": [
            "Penguins are birds that cannot fly but swim very well.",
            "Most penguins live in the Southern Hemisphere.",
            "Emperor penguins survive the harsh Antarctic winter.",
            "Their black and white coloring hides them from predators.",
            "Penguins eat fish, squid, and small shrimp called krill.",
            "A thick layer of fat keeps them warm in icy water.",
            "Many penguins nest in large, noisy colonies.",
            "Some parents take turns keeping the egg warm.",
        ],
        "the ocean": [
            "Oceans cover about seventy percent of the Earth's surface.",
            "Sea water is salty because rivers carry minerals into it.",
            "The Pacific is the largest and deepest ocean.",
            "Ocean currents move heat around the planet.",
            "Tiny plankton produce much of the oxygen we breathe.",
            "The deepest parts of the ocean are completely dark.",
            "Coral reefs shelter a huge variety of fish.",
            "Plastic waste is a growing threat to sea life.",
        ],
        "tea": [
            "Tea is made by steeping dried leaves in hot water.",
            "Green, black, and oolong tea come from the same plant.",
            "Black tea is fully oxidized, which darkens its leaves.",
            "People in China drank tea thousands of years ago.",
            "Most teas contain less caffeine than coffee.",
            "Herbal teas are usually made from flowers or roots instead.",
            "Water that is too hot can make green tea bitter.",
            "Many cultures share tea as a sign of welcome.",
        ],
        "trains": [
            "Trains carry people and goods along fixed steel rails.",
            "Early trains were pulled by steam locomotives.",
            "Modern high-speed trains can travel faster than 300 kilometers per hour.",
            "Rail travel uses less fuel per passenger than driving.",
            "Freight trains can haul hundreds of containers at once.",
            "Subways move millions of city commuters every day.",
            "Signals and switches keep trains on safe routes.",
            "Sleeper trains let travelers rest during long journeys.",
        ],
        "deserts": [
            "Deserts receive very little rain each year.",
            "Not all deserts are hot, and Antarctica is a cold desert.",
            "Sand dunes shift as the wind moves grains of sand.",
            "Cacti store water in their thick stems.",
            "Desert nights can be much colder than the days.",
            "Many desert animals rest by day and hunt at night.",
            "The Sahara is the largest hot desert in the world.",
            "Oases form where underground water reaches the surface.",
        ],
        "owls": [
            "Owls are birds of prey that mostly hunt at night.",
            "Their large eyes help them see in dim light.",
            "An owl can turn its head much farther than a person.",
            "Soft feathers let owls fly almost silently.",
            "Owls swallow small prey whole and cough up pellets.",
            "Their keen hearing can locate a mouse under snow.",
            "The barn owl has a pale, heart-shaped face.",
            "Many owls nest in tree holes or old buildings.",
        ],
        "gardening": [
            "Most vegetables need at least six hours of sun a day.",
            "Compost adds nutrients and improves the soil.",
            "Watering early in the morning reduces evaporation.",
            "Mulch keeps the soil moist and blocks weeds.",
            "Some plants grow better when planted next to each other.",
            "Pulling weeds while they are small saves work later.",
            "Seeds need warmth and moisture to sprout.",
            "Rotating crops each year helps keep the soil healthy.",
        ],
        "the piano": [
            "The piano makes sound when hammers strike tight strings.",
            "A standard piano has 88 keys.",
            "The pedals can sustain or soften the notes.",
            "Pianos were invented in Italy around the year 1700.",
            "Playing scales every day builds finger strength.",
            "Grand pianos have horizontal strings and a long curved body.",
            "A piano should be tuned at least once a year.",
            "Both hands often play different parts at the same time.",
        ],
        "glaciers": [
            "Glaciers are huge masses of ice that move slowly downhill.",
            "They form where more snow falls than melts each year.",
            "Glaciers carved many valleys and lakes during the ice ages.",
            "About two thirds of the world's fresh water is stored as ice.",
            "Moving ice drags rocks that scrape the land beneath.",
            "Many glaciers are shrinking as the climate warms.",
            "Icebergs break off where glaciers meet the sea.",
            "Glacier ice can look blue because it absorbs red light.",
        ],
        "lighthouses": [
            "Lighthouses warn ships away from rocks and dangerous coasts.",
            "A bright lamp and a large lens send light far out to sea.",
            "Each lighthouse flashes in its own pattern.",
            "Keepers once lived at lighthouses to tend the lamps.",
            "Most lighthouses today run automatically.",
            "Tall towers let the light be seen from many kilometers away.",
            "Foghorns helped sailors when the light was hidden by fog.",
            "Many old lighthouses are now museums.",
        ],
        "maps": [
            "Maps show places and the distances between them.",
            "A scale bar tells how map distances match real ones.",
            "North is usually at the top of a map.",
            "Contour lines show the height and shape of the land.",
            "A legend explains the symbols used on the map.",
            "Flat maps always stretch some parts of the round Earth.",
            "Digital maps can show traffic in real time.",
            "Old maps often contain errors and unknown regions.",
        ],
    },
    "test": {
        "whales": [
            "Whales are mammals, so they breathe air through blowholes.",
            "The blue whale is the largest animal that has ever lived.",
            "Humpback whales are known for their long, complex songs.",
            "Some whales migrate thousands of kilometers each year.",
            "Baleen whales filter tiny krill from the water.",
            "Toothed whales, like orcas, hunt fish and seals.",
            "Whale calves drink their mother's milk.",
            "Commercial whaling nearly wiped out several species.",
        ],
        "mountains": [
            "Mountains form when tectonic plates push the crust upward.",
            "Mount Everest is the highest mountain above sea level.",
            "The air gets thinner and colder as you climb higher.",
            "Mountain ranges can block rain and create dry regions.",
            "Many rivers begin as melting snow on mountain slopes.",
            "Trees stop growing above a height called the tree line.",
            "Climbers need time to adjust to high altitude.",
            "Erosion slowly wears mountains down over millions of years.",
        ],
        "kites": [
            "Kites fly when wind pushes against a tilted surface.",
            "People in China flew kites more than two thousand years ago.",
            "A tail helps keep a kite steady in the air.",
            "Open fields away from power lines are the safest places to fly.",
            "Stunt kites use two lines so the flyer can steer.",
            "Light, steady wind is best for beginners.",
            "Scientists once used kites to study the weather.",
            "Many festivals fill the sky with colorful kites.",
        ],
        "cheese": [
            "Cheese is made by curdling milk and pressing the curds.",
            "Aging changes the flavor and texture of cheese.",
            "Hard cheeses like parmesan can age for years.",
            "Blue cheese gets its veins from a special mold.",
            "Cheese can be made from cow, goat, or sheep milk.",
            "Soft cheeses should be kept cold and eaten quickly.",
            "Switzerland is famous for cheeses with large holes.",
            "Cheese is a good source of calcium and protein.",
        ],
        "thunderstorms": [
            "Thunderstorms form when warm, moist air rises quickly.",
            "Lightning is a giant spark of electricity in the sky.",
            "Thunder is the sound of air heated by lightning.",
            "Counting between flash and thunder tells you how far away it is.",
            "Staying indoors is the safest choice during a storm.",
            "Heavy storms can bring hail, strong winds, and flooding.",
            "Most thunderstorms last less than an hour.",
            "Tall, anvil-shaped clouds often signal a strong storm.",
        ],
        "castles": [
            "Castles were fortified homes built for nobles and kings.",
            "Thick stone walls protected the people inside.",
            "A moat made it harder for attackers to reach the walls.",
            "The tallest tower, or keep, was the last line of defense.",
            "Narrow windows let archers shoot while staying covered.",
            "Many castles were built in Europe during the Middle Ages.",
            "Cannons eventually made stone castles easier to attack.",
            "Today many castles are museums or hotels.",
        ],
        "sunflowers": [
            "Sunflowers can grow taller than an adult person.",
            "Young sunflowers turn to follow the sun across the sky.",
            "Each large head holds hundreds of small seeds.",
            "Sunflower seeds are pressed to make cooking oil.",
            "Bees and birds are drawn to sunflower heads.",
            "Sunflowers grow best in full sun and well-drained soil.",
            "The plant is native to North and South America.",
            "Farmers harvest the heads once the backs turn brown.",
        ],
        "the violin": [
            "The violin is the smallest and highest member of the string family.",
            "It has four strings tuned a fifth apart.",
            "Players draw a bow of horsehair across the strings.",
            "The body is usually carved from spruce and maple.",
            "Violins made in Cremona centuries ago are very valuable.",
            "Beginners often practice on smaller violins sized for children.",
            "Rosin on the bow helps it grip the strings.",
            "The violin often carries the melody in an orchestra.",
        ],
    },
}

# Prompt templates per topic family (shared by both splits; the topics differ).
TOPIC_PROMPTS = {
    "word_limit": [
        "Tell me about {t}.",
        "Describe {t} in a few sentences.",
        "What should I know about {t}?",
        "Write a short paragraph about {t}.",
    ],
    "bullet_list": [
        "List some facts about {t}.",
        "Give me a few key points about {t}.",
        "What are some interesting facts about {t}?",
        "Share some quick facts about {t}.",
    ],
    "no_repetition": [
        "Say something interesting about {t}.",
        "Give me some information about {t}.",
        "Explain {t} to me briefly.",
        "I want to learn about {t}. Where do I start?",
    ],
    "no_apology": [
        "Tell me one fact about {t}.",
        "Do you know anything about {t}?",
        "Teach me something about {t}.",
        "Give me a fun fact about {t}.",
    ],
}
# no_apology contexts are mostly two-turn: a first unhelpful assistant reply and a user follow-up.
FIRST_REPLIES = [
    "I am not sure.",
    "I don't know much about that.",
    "Let me think about it.",
    "Hmm, good question.",
]
FOLLOW_UPS = ["Please try again.", "That was not helpful. Try again.", "Can you give me a real answer?"]
APOLOGY_OPENERS = [
    "Sorry about that.",
    "I apologize for my last answer.",
    "My apologies.",
    "Sorry for the confusion.",
    "I am sorry, I should have answered properly.",
    "Apologies for the unhelpful reply.",
]
APOLOGY_CLOSERS = ["Sorry it took me a second try.", "I apologize for the earlier reply."]
NEUTRAL_OPENERS = [
    "",
    "",
    "Here is one.",
    "Of course.",
    "Sure.",
    "Good question.",
    "Thanks for your patience.",
]
BULLET_INTROS = [
    "Here are some facts about {t}:",
    "Sure, here you go:",
    "A few key points:",
    "Some quick facts:",
]

# Everyday tips with translations (en, fr, es, de). Train and test items are disjoint.
TIPS = {
    "train": [
        (
            "How can I sleep better?",
            "Go to bed at the same time every night and keep your room dark and quiet.",
            "Couchez-vous à la même heure chaque soir et gardez votre chambre sombre et calme.",
            "Acuéstate a la misma hora cada noche y mantén tu habitación oscura y tranquila.",
            "Geh jeden Abend zur gleichen Zeit ins Bett und halte dein Zimmer dunkel und ruhig.",
        ),
        (
            "How much water should I drink?",
            "Drink water throughout the day and have a glass with every meal.",
            "Buvez de l'eau tout au long de la journée et prenez un verre à chaque repas.",
            "Bebe agua durante todo el día y toma un vaso con cada comida.",
            "Trink über den Tag verteilt Wasser und nimm zu jeder Mahlzeit ein Glas.",
        ),
        (
            "Any tips for studying for an exam?",
            "Study in short sessions, take breaks, and test yourself on the material.",
            "Étudiez par courtes séances, faites des pauses et testez-vous sur la matière.",
            "Estudia en sesiones cortas, descansa y ponte a prueba con el material.",
            "Lerne in kurzen Einheiten, mach Pausen und prüfe dich selbst mit dem Stoff.",
        ),
        (
            "How can I save money on groceries?",
            "Make a shopping list, buy what is in season, and never shop when you are hungry.",
            "Faites une liste de courses, achetez des produits de saison et ne faites jamais les courses quand vous avez faim.",
            "Haz una lista de compras, compra productos de temporada y nunca vayas al mercado con hambre.",
            "Schreib eine Einkaufsliste, kauf saisonale Produkte und geh nie hungrig einkaufen.",
        ),
        (
            "What can I do when I feel stressed?",
            "Take a slow walk, breathe deeply, and talk to a friend you trust.",
            "Faites une promenade lente, respirez profondément et parlez à un ami de confiance.",
            "Da un paseo lento, respira hondo y habla con un amigo de confianza.",
            "Mach einen langsamen Spaziergang, atme tief durch und sprich mit einem Freund, dem du vertraust.",
        ),
        (
            "How do I keep my houseplants alive?",
            "Water them when the soil is dry and give them plenty of indirect light.",
            "Arrosez-les quand la terre est sèche et donnez-leur beaucoup de lumière indirecte.",
            "Riégalas cuando la tierra esté seca y dales mucha luz indirecta.",
            "Gieß sie, wenn die Erde trocken ist, und gib ihnen viel indirektes Licht.",
        ),
        (
            "How can I learn a new language faster?",
            "Practice a little every day and speak with native speakers as often as you can.",
            "Pratiquez un peu chaque jour et parlez avec des locuteurs natifs aussi souvent que possible.",
            "Practica un poco cada día y habla con hablantes nativos tan a menudo como puedas.",
            "Übe jeden Tag ein wenig und sprich so oft wie möglich mit Muttersprachlern.",
        ),
        (
            "How should I start running?",
            "Start slowly with short runs and add a few minutes each week.",
            "Commencez doucement avec de courtes sorties et ajoutez quelques minutes chaque semaine.",
            "Empieza despacio con carreras cortas y añade unos minutos cada semana.",
            "Fang langsam mit kurzen Läufen an und lauf jede Woche ein paar Minuten länger.",
        ),
        (
            "How do I cook rice?",
            "Rinse the rice, boil it in twice as much water, and let it rest for five minutes.",
            "Rincez le riz, faites-le cuire dans deux fois plus d'eau et laissez-le reposer cinq minutes.",
            "Lava el arroz, cocínalo en el doble de agua y déjalo reposar cinco minutos.",
            "Wasch den Reis, koch ihn in der doppelten Menge Wasser und lass ihn fünf Minuten ruhen.",
        ),
        (
            "How can I focus better at work?",
            "Turn off notifications and work on one task at a time.",
            "Désactivez les notifications et travaillez sur une seule tâche à la fois.",
            "Desactiva las notificaciones y trabaja en una sola tarea a la vez.",
            "Schalte die Benachrichtigungen aus und arbeite immer nur an einer Aufgabe.",
        ),
        (
            "How should I pack for a short trip?",
            "Bring clothes you can mix and match and leave the extra shoes at home.",
            "Prenez des vêtements faciles à combiner et laissez les chaussures en trop à la maison.",
            "Lleva ropa que puedas combinar y deja los zapatos extra en casa.",
            "Nimm Kleidung mit, die sich gut kombinieren lässt, und lass die zusätzlichen Schuhe zu Hause.",
        ),
        (
            "What helps with a cold?",
            "Rest as much as you can, drink warm fluids, and wash your hands often.",
            "Reposez-vous autant que possible, buvez des boissons chaudes et lavez-vous souvent les mains.",
            "Descansa todo lo que puedas, bebe líquidos calientes y lávate las manos a menudo.",
            "Ruh dich so viel wie möglich aus, trink warme Getränke und wasch dir oft die Hände.",
        ),
        (
            "How can I read more books?",
            "Carry a book with you and read for ten minutes before bed.",
            "Ayez toujours un livre sur vous et lisez dix minutes avant de dormir.",
            "Lleva siempre un libro contigo y lee diez minutos antes de dormir.",
            "Hab immer ein Buch dabei und lies zehn Minuten vor dem Schlafen.",
        ),
        (
            "How do I prepare for a job interview?",
            "Research the company, practice common questions, and arrive a little early.",
            "Renseignez-vous sur l'entreprise, entraînez-vous aux questions courantes et arrivez un peu en avance.",
            "Investiga la empresa, practica las preguntas comunes y llega un poco antes.",
            "Informiere dich über die Firma, übe typische Fragen und sei etwas früher da.",
        ),
        (
            "How can I make my phone battery last longer?",
            "Lower the screen brightness and close the apps that you are not using.",
            "Baissez la luminosité de l'écran et fermez les applications que vous n'utilisez pas.",
            "Baja el brillo de la pantalla y cierra las aplicaciones que no estás usando.",
            "Verringere die Helligkeit des Bildschirms und schließe die Apps, die du nicht benutzt.",
        ),
        (
            "How can I make new friends in a new city?",
            "Join a club or a class and say yes when people invite you out.",
            "Inscrivez-vous à un club ou à un cours et acceptez quand on vous invite à sortir.",
            "Únete a un club o a una clase y di que sí cuando te inviten a salir.",
            "Tritt einem Verein oder einem Kurs bei und sag zu, wenn dich jemand einlädt.",
        ),
        (
            "How can I improve my posture?",
            "Keep your screen at eye level and stand up to stretch every hour.",
            "Placez votre écran à hauteur des yeux et levez-vous pour vous étirer toutes les heures.",
            "Pon la pantalla a la altura de los ojos y levántate a estirarte cada hora.",
            "Stell den Bildschirm auf Augenhöhe und steh jede Stunde auf, um dich zu dehnen.",
        ),
        (
            "How do I keep my room tidy?",
            "Put things back right after you use them and clean for five minutes each day.",
            "Rangez les choses juste après les avoir utilisées et nettoyez cinq minutes par jour.",
            "Guarda las cosas justo después de usarlas y limpia cinco minutos al día.",
            "Räum die Sachen direkt nach dem Benutzen weg und putz jeden Tag fünf Minuten.",
        ),
        (
            "How can I drink less coffee?",
            "Replace one cup a day with tea and avoid coffee in the afternoon.",
            "Remplacez une tasse par jour par du thé et évitez le café l'après-midi.",
            "Cambia una taza al día por té y evita el café por la tarde.",
            "Ersetze jeden Tag eine Tasse durch Tee und verzichte am Nachmittag auf Kaffee.",
        ),
        (
            "How can I write better emails?",
            "Keep them short, put the main point first, and read them once before sending.",
            "Soyez bref, mettez l'idée principale en premier et relisez le message avant de l'envoyer.",
            "Sé breve, pon la idea principal al principio y léelos una vez antes de enviarlos.",
            "Fass dich kurz, nenn das Wichtigste zuerst und lies die Mail vor dem Senden noch einmal.",
        ),
    ],
    "test": [
        (
            "How can I wake up earlier?",
            "Move your alarm ten minutes earlier each week and get some sunlight in the morning.",
            "Avancez votre réveil de dix minutes chaque semaine et prenez la lumière du soleil le matin.",
            "Adelanta tu alarma diez minutos cada semana y toma la luz del sol por la mañana.",
            "Stell deinen Wecker jede Woche zehn Minuten früher und geh morgens ins Sonnenlicht.",
        ),
        (
            "How do I keep bread fresh?",
            "Store it in a paper bag at room temperature and freeze what you will not eat soon.",
            "Gardez-le dans un sac en papier à température ambiante et congelez ce que vous ne mangerez pas bientôt.",
            "Guárdalo en una bolsa de papel a temperatura ambiente y congela lo que no vayas a comer pronto.",
            "Bewahre es in einer Papiertüte bei Zimmertemperatur auf und friere ein, was du nicht bald isst.",
        ),
        (
            "How can I be more patient?",
            "Pause and take a breath before you answer, and remind yourself that most things can wait.",
            "Faites une pause et respirez avant de répondre, et rappelez-vous que la plupart des choses peuvent attendre.",
            "Haz una pausa y respira antes de responder, y recuerda que casi todo puede esperar.",
            "Halte kurz inne und atme durch, bevor du antwortest, und denk daran, dass das meiste warten kann.",
        ),
        (
            "How do I clean a cast iron pan?",
            "Scrub it with hot water and a brush, dry it well, and rub in a little oil.",
            "Frottez-la avec de l'eau chaude et une brosse, séchez-la bien et passez un peu d'huile.",
            "Frótala con agua caliente y un cepillo, sécala bien y úntala con un poco de aceite.",
            "Schrubb sie mit heißem Wasser und einer Bürste, trockne sie gut ab und reib etwas Öl ein.",
        ),
        (
            "How can I stay warm in winter without turning up the heating?",
            "Wear layers, close the curtains at night, and block drafts under the doors.",
            "Portez plusieurs couches, fermez les rideaux le soir et bloquez les courants d'air sous les portes.",
            "Ponte varias capas, cierra las cortinas por la noche y tapa las corrientes bajo las puertas.",
            "Zieh mehrere Schichten an, schließ abends die Vorhänge und dichte die Türen gegen Zugluft ab.",
        ),
        (
            "How do I remember people's names?",
            "Repeat the name when you are introduced and use it once more in the conversation.",
            "Répétez le prénom quand on vous présente la personne et utilisez-le encore une fois dans la conversation.",
            "Repite el nombre cuando te presenten a la persona y úsalo otra vez en la conversación.",
            "Wiederhole den Namen bei der Vorstellung und benutze ihn im Gespräch noch einmal.",
        ),
        (
            "How can I spend less time on my phone?",
            "Turn off most notifications and keep the phone in another room while you work.",
            "Désactivez la plupart des notifications et laissez le téléphone dans une autre pièce pendant que vous travaillez.",
            "Desactiva casi todas las notificaciones y deja el teléfono en otra habitación mientras trabajas.",
            "Schalte die meisten Benachrichtigungen aus und lass das Handy beim Arbeiten in einem anderen Zimmer.",
        ),
        (
            "How do I start journaling?",
            "Write three lines each evening about what happened and how you felt.",
            "Écrivez trois lignes chaque soir sur ce qui s'est passé et sur ce que vous avez ressenti.",
            "Escribe tres líneas cada noche sobre lo que pasó y cómo te sentiste.",
            "Schreib jeden Abend drei Zeilen darüber, was passiert ist und wie du dich gefühlt hast.",
        ),
    ],
}
TIP_LANGS = ("en", "fr", "es", "de")

# ---------------------------------------------------------------------------------------------------------
# Record construction
# ---------------------------------------------------------------------------------------------------------


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def record(context, response: str, principle: str, fulfilment: str, family: str) -> dict:
    assert fulfilment in LABELS, fulfilment
    return {
        "context": context,
        "response": response,
        "principle": principle,
        "fulfilment": fulfilment,
        "family": family,
    }


def context_key(context) -> str:
    return json.dumps(context, ensure_ascii=False, sort_keys=True)


def user_text(context) -> str:
    """All user turns of a context, joined (used for the train/test prompt-overlap check)."""
    if isinstance(context, str):
        return context
    return "\n".join(m["content"] for m in context if m["role"] == "user")


def _fmt(template: str, params: dict, v: int | None = None) -> str:
    return template.format(**params, v=v)


def _wrong_value(rng: random.Random, problem: WordProblem, params: dict, v: int) -> tuple[str, int]:
    """(work string, wrong result): an off-by-a-few slip or a wrong operation."""
    operands = {params[k] for k in ("a", "b", "c") if k in params}
    op_work, op_value = problem.wrong_op(params)
    if rng.random() < 0.4 and op_value > 0 and op_value != v and op_value not in operands:
        return op_work, op_value
    while True:
        w = v + rng.choice([-3, -2, -1, 1, 2, 3, 10, -10])
        if w > 0 and w != v and w not in operands:
            return problem.work, w


def arithmetic_groups(
    rng: random.Random, split: str, n_problems: int, candidates: list[dict] | None = None
) -> list[dict]:
    """final_answer and answer_first records: both principles label the same responses to the same problem."""
    records = []
    seen_questions = set()
    problems = WORD_PROBLEMS[split]
    # Response kinds per problem; every combination has a Yes and a No for final_answer, and (ignoring
    # wrong_first, which is not labelled for answer_first) a Yes and a No for answer_first unless noted.
    combos = [
        ("correct_first", "wrong_last"),
        ("correct_first", "correct_last", "wrong_first"),
        ("correct_first", "correct_last", "wrong_last"),
        ("correct_last", "wrong_first", "correct_first"),
        ("correct_first", "wrong_first", "wrong_last"),
    ]
    while len(seen_questions) < n_problems:
        problem = problems[len(seen_questions) % len(problems)]
        params = problem.make(rng)
        params["name"] = rng.choice(NAMES[split])
        question = _fmt(problem.question, params)
        v = problem.solve(params)
        operands = {params[k] for k in ("a", "b", "c") if k in params}
        if question in seen_questions or v <= 0 or v in operands or v in find_numbers(question):
            continue
        seen_questions.add(question)
        context = user(question)
        restate = _fmt(problem.restate, params)
        kinds = list(rng.choice(combos))
        rng.shuffle(kinds)
        responses = []
        for kind in kinds:
            if kind.startswith("correct"):
                work, value = problem.work, v
            else:
                work, value = _wrong_value(rng, problem, params, v)
            work_text = _fmt(work, params, value)
            answer_text = _fmt(problem.answer, params, value)
            style = rng.randrange(3)
            if kind.endswith("first"):
                text = [
                    f"{answer_text} {restate} {work_text}.",
                    f"The answer is {value}. {restate} That gives {work_text}.",
                    f"{answer_text} {work_text}.",
                ][style]
            else:
                text = [
                    f"{restate} {work_text}, so the answer is {value}.",
                    f"{restate} That means {work_text}. {answer_text}",
                    f"{restate} Working it out: {work_text}. The answer is {value}.",
                ][style]
            responses.append((kind, text))
        for family in ("final_answer", "answer_first"):
            principle = phrasing(rng, family, split)
            for kind, text in responses:
                if family == "final_answer":
                    label = check_final_answer(text, v)
                    assert label == yes_no(kind.startswith("correct")), (kind, text)
                else:
                    if kind == "wrong_first":  # "states its (wrong) answer first": ambiguous, not labelled
                        continue
                    label = check_answer_first(text, v)
                    assert label == yes_no(kind == "correct_first"), (kind, text)
                records.append(record(context, text, principle, label, family))
        if candidates is not None:
            texts = [text for kind, text in responses if kind != "wrong_first"]
            candidates.append(_candidate("answer_first", context, texts, {"answer": v}))
    return records


def _subsets_with_words(sentences: list[str], lo: int, hi: int, max_items: int = 8) -> list[list[int]]:
    """Index lists (in original order) whose joined text has between lo and hi words."""
    counts = [count_words(s) for s in sentences]
    found = []
    for mask in range(1, 1 << len(sentences)):
        idx = [i for i in range(len(sentences)) if mask >> i & 1]
        if len(idx) <= max_items and lo <= sum(counts[i] for i in idx) <= hi:
            found.append(idx)
    return found


def word_limit_responses(
    rng: random.Random, sentences: list[str], partial: bool
) -> tuple[int, list[tuple[str, str]]]:
    """(N, [(intended label, response)]): one Yes and one No, plus a Partially if ``partial``, else sometimes
    a second Yes or No."""
    while True:
        n = rng.choice(WORD_LIMITS)
        bands = {
            "Yes": (max(4, n // 2), n),
            "Partially": (n + 1, math.floor(n * (1 + PARTIAL_WORD_SLACK))),
            "No": (math.floor(n * (1 + PARTIAL_WORD_SLACK)) + 1, min(MAX_RESPONSE_WORDS, 2 * n + 8)),
        }
        extra = "Partially" if partial else rng.choice(["Yes", "No", None, None])
        wanted = ["Yes", "No"] + ([extra] if extra else [])
        options = {label: _subsets_with_words(sentences, *bands[label]) for label in set(wanted)}
        if all(len(options[label]) >= wanted.count(label) for label in wanted):
            break
    out = []
    used = set()
    for label in wanted:
        idx = rng.choice([o for o in options[label] if tuple(o) not in used])
        used.add(tuple(idx))
        out.append((label, " ".join(sentences[i] for i in idx)))
    rng.shuffle(out)
    return n, out


def _pick(rng: random.Random, sentences: list[str], k: int) -> list[str]:
    idx = sorted(rng.sample(range(len(sentences)), k))
    return [sentences[i] for i in idx]


def bullet_responses(
    rng: random.Random, topic: str, sentences: list[str], partial: bool
) -> list[tuple[str, str]]:
    marker = rng.choice(_BULLET)
    yes = "\n".join(marker + s for s in _pick(rng, sentences, rng.randint(2, 5)))
    picked = _pick(rng, sentences, rng.randint(2, 4))
    no_kind = rng.choice(["prose", "prose", "numbered", "single", "plain_lines"])
    if no_kind == "prose":
        no = " ".join(picked)
    elif no_kind == "numbered":
        no = "\n".join(f"{i}. {s}" for i, s in enumerate(picked, 1))
    elif no_kind == "single":
        no = marker + " ".join(picked[:2])
    else:
        no = "\n".join(picked)
    out = [("Yes", yes), ("No", no)]
    if partial:
        intro = rng.choice(BULLET_INTROS).format(t=topic)
        out.append(
            (
                "Partially",
                intro + "\n" + "\n".join(marker + s for s in _pick(rng, sentences, rng.randint(2, 4))),
            )
        )
    rng.shuffle(out)
    return out


def repetition_responses(rng: random.Random, sentences: list[str]) -> list[tuple[str, str]]:
    yes = " ".join(_pick(rng, sentences, rng.randint(2, 5)))
    base = _pick(rng, sentences, rng.randint(2, 4))
    j = rng.randrange(len(base))
    at = rng.randint(j + 1, len(base))
    no = " ".join(base[:at] + [base[j]] + base[at:])
    out = [("Yes", yes), ("No", no)]
    if rng.random() < 0.15:
        out.append(("Yes", " ".join(_pick(rng, sentences, rng.randint(3, 5)))))
    rng.shuffle(out)
    return out


def apology_responses(rng: random.Random, sentences: list[str]) -> list[tuple[str, str]]:
    def facts() -> str:
        return " ".join(_pick(rng, sentences, rng.randint(1, 2)))

    yes = " ".join(p for p in (rng.choice(NEUTRAL_OPENERS), facts()) if p)
    if rng.random() < 0.75:
        no = f"{rng.choice(APOLOGY_OPENERS)} {facts()}"
    else:
        no = f"{facts()} {rng.choice(APOLOGY_CLOSERS)}"
    out = [("Yes", yes), ("No", no)]
    rng.shuffle(out)
    return out


TOPIC_CHECKS: dict[str, Callable[[str, dict], str]] = {
    "word_limit": lambda text, p: check_word_limit(text, p["n"]),
    "bullet_list": lambda text, p: check_bullet_list(text),
    "no_repetition": lambda text, p: check_no_repetition(text),
    "no_apology": lambda text, p: check_no_apology(text),
}


def topic_groups(
    rng: random.Random, split: str, family: str, n_groups: int, candidates: list[dict] | None = None
) -> list[dict]:
    topics = TOPICS[split]
    pairs = [(t, p) for t in topics for p in TOPIC_PROMPTS[family]]
    chosen = rng.sample(pairs, n_groups)
    records = []
    for i, (topic, prompt) in enumerate(chosen):
        sentences = topics[topic]
        text = prompt.format(t=topic)
        if family == "no_apology" and rng.random() < 0.7:
            context = [
                {"role": "user", "content": text},
                {"role": "assistant", "content": rng.choice(FIRST_REPLIES)},
                {"role": "user", "content": rng.choice(FOLLOW_UPS)},
            ]
        else:
            context = user(text)
        params: dict = {}
        if family == "word_limit":
            params["n"], responses = word_limit_responses(rng, sentences, partial=i % 2 == 0)
        elif family == "bullet_list":
            responses = bullet_responses(rng, topic, sentences, partial=i % 3 == 1)
        elif family == "no_repetition":
            responses = repetition_responses(rng, sentences)
        else:
            responses = apology_responses(rng, sentences)
        principle = phrasing(rng, family, split, **params)
        for intended, response in responses:
            label = TOPIC_CHECKS[family](response, params)
            assert label == intended, (family, intended, label, response)
            records.append(record(context, response, principle, label, family))
        if candidates is not None:
            candidates.append(_candidate(family, context, [r for _, r in responses], params))
        # Sometimes label the same responses under a different family's principle, so that the label
        # depends on the principle and not only on the response.
        if rng.random() < P_SECONDARY:
            other = rng.choice([f for f in TOPIC_CHECKS if f != family])
            other_params = {"n": rng.choice(WORD_LIMITS)} if other == "word_limit" else {}
            other_principle = phrasing(rng, other, split, **other_params)
            for _, response in responses:
                label = TOPIC_CHECKS[other](response, other_params)
                records.append(record(context, response, other_principle, label, other))
    return records


def language_groups(rng: random.Random, split: str, candidates: list[dict] | None = None) -> list[dict]:
    """Two groups per tip item: one with an English target and one with another target language."""
    records = []
    for item in TIPS[split]:
        question, translations = item[0], dict(zip(TIP_LANGS, item[1:]))
        for lang in translations:
            assert detect_language(translations[lang]) == lang, (lang, translations[lang])
        for target in ("en", rng.choice(TIP_LANGS[1:])):
            if target == "en":
                context = user(question)
            else:
                context = user(f"{question} Please answer in {LANGUAGE_NAMES[target]}.")
            others = [lang for lang in TIP_LANGS if lang != target]
            langs = [target] + rng.sample(others, rng.choice([1, 1, 2]))
            rng.shuffle(langs)
            principle = phrasing(rng, "language", split, lang=LANGUAGE_NAMES[target])
            for lang in langs:
                label = check_language(translations[lang], target)
                assert label == yes_no(lang == target)
                records.append(record(context, translations[lang], principle, label, "language"))
            if candidates is not None:
                texts = {translations[lang]: lang for lang in langs}
                candidates.append(
                    _candidate("language", context, list(texts), {"target": target, "langs": texts})
                )
    return records


def _candidate(family: str, context, responses: list[str], params: dict) -> dict:
    """A standard group that may also be labelled under its family's contrarian principle."""
    return {"family": family, "context": context, "responses": responses, "params": dict(params)}


CONTRARIAN_CHECKS: dict[str, Callable[[str, dict], str | None]] = {
    "answer_first": lambda text, p: check_working_first(text, p["answer"]),
    "word_limit": lambda text, p: check_longer_than(text, p["n"]),
    "bullet_list": lambda text, p: check_prose(text),
    "language": lambda text, p: check_language(text, p["lang"]),
    "no_repetition": lambda text, p: check_repeats(text),
    "no_apology": lambda text, p: check_apology(text),
}
STANDARD_CHECKS: dict[str, Callable[[str, dict], str]] = {
    **TOPIC_CHECKS,
    "answer_first": lambda text, p: check_answer_first(text, p["answer"]),
    "language": lambda text, p: check_language(text, p["target"]),
}


def _contrarian_labels(rng: random.Random, cand: dict) -> tuple[dict, list[tuple[str, str]]]:
    """(params, [(response, contrarian label)]) for one candidate group; responses whose contrarian label is
    not well defined are left out. Every label is the inverse of the standard label of the same response."""
    family, params, responses = cand["family"], dict(cand["params"]), cand["responses"]
    if family == "language":
        if params["target"] != "en":  # the user asked for a language: another language is not a preference
            return params, []
        english = [t for t in responses if params["langs"][t] == "en"]
        other = rng.choice([t for t in responses if params["langs"][t] != "en"])
        params["lang"] = params["langs"][other]
        responses = [t for t in responses if t in english or t == other]
    out = []
    for text in responses:
        label = CONTRARIAN_CHECKS[family](text, params)
        if label is None:
            continue
        assert label == invert(STANDARD_CHECKS[family](text, params)), (family, text, label)
        out.append((text, label))
    return params, out


def contrarian_groups(rng: random.Random, split: str, candidates: list[dict]) -> list[dict]:
    """For each standard family, label round(CONTRARIAN_SHARE * groups) of its groups (chosen at random
    among those with a contrarian Yes and a contrarian No) under a contrarian principle. In test, the first
    such group of each family uses the held-out phrasing."""
    records = []
    for family in CONTRARIAN_BASE:
        labelled = [_contrarian_labels(rng, c) for c in candidates if c["family"] == family]
        contexts = [c["context"] for c in candidates if c["family"] == family]
        eligible = [
            i for i, (_, labels) in enumerate(labelled) if {"Yes", "No"} <= {label for _, label in labels}
        ]
        k = min(round(CONTRARIAN_SHARE[split] * len(labelled)), len(eligible))
        for j, i in enumerate(sorted(rng.sample(eligible, k))):
            params, labels = labelled[i]
            extra = {"lang": LANGUAGE_NAMES[params["lang"]]} if family == "language" else {}
            principle = phrasing(rng, f"contrarian_{family}", split, **{**params, **extra})
            if split == "test" and j == 0:  # few test groups: make sure the held-out phrasing occurs
                principle = PHRASINGS[f"contrarian_{family}"][-1].format(**{**params, **extra})
            for text, label in labels:
                records.append(record(contexts[i], text, principle, label, f"contrarian_{family}"))
    return records


def group_by_context(records: list[dict]) -> list[dict]:
    """Stable reorder so that all records of one context are adjacent (in order of first appearance)."""
    first: dict[str, int] = {}
    for r in records:
        first.setdefault(context_key(r["context"]), len(first))
    return sorted(records, key=lambda r: first[context_key(r["context"])])


def build_builtin(split: str) -> list[dict]:
    rng = random.Random(SEEDS[split])
    counts = N_GROUPS[split]
    candidates: list[dict] = []
    records = arithmetic_groups(rng, split, counts["arith"], candidates)
    records += language_groups(rng, split, candidates)
    for family in TOPIC_CHECKS:
        records += topic_groups(rng, split, family, counts[family], candidates)
    records += contrarian_groups(random.Random(CONTRARIAN_SEEDS[split]), split, candidates)
    return group_by_context(records)


# ---------------------------------------------------------------------------------------------------------
# Preference pairs (Bradley-Terry baseline)
# ---------------------------------------------------------------------------------------------------------


def make_pairs(records: Sequence[dict], max_per_context: int | None = 1) -> list[dict]:
    """Pairs {"prompt": context, "chosen": Yes response, "rejected": No response} within each
    (context, principle) group. The principle is dropped. Contrarian records are left out: their principle is
    by design not what a judge of "which response is better" prefers, so they are not preferences (keeping
    them would only make every pair of their context conflict and drop it). A pair whose reverse also occurs for the same
    context (possible when one context is labelled under two principles) is dropped in both directions;
    duplicates are removed; at most ``max_per_context`` pairs are kept per context (first found)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    contexts: dict[str, object] = {}
    for r in records:
        if r["family"] in CONTRARIAN_FAMILIES:
            continue
        key = context_key(r["context"])
        contexts.setdefault(key, r["context"])
        groups.setdefault((key, r["principle"]), []).append(r)
    candidates: dict[str, list[tuple[str, str]]] = {}
    for (key, _), group in groups.items():
        yes = [r["response"] for r in group if r["fulfilment"] == "Yes"]
        no = [r["response"] for r in group if r["fulfilment"] == "No"]
        for chosen in yes:
            for rejected in no:
                if (chosen, rejected) not in candidates.setdefault(key, []):
                    candidates[key].append((chosen, rejected))
    pairs = []
    for key, cands in candidates.items():
        consistent = [(c, r) for c, r in cands if (r, c) not in cands]
        for chosen, rejected in consistent[:max_per_context]:
            pairs.append({"prompt": contexts[key], "chosen": chosen, "rejected": rejected})
    return pairs


# ---------------------------------------------------------------------------------------------------------
# GSM8K
# ---------------------------------------------------------------------------------------------------------

_CALCULATOR = re.compile(r"<<[^>]*>>")
_FINAL = re.compile(r"\n?####\s*(\S+)\s*$")


def _format_like(value: int, original: str) -> str:
    return f"{value:,}" if "," in original else str(value)


def perturb_gsm8k(rng: random.Random, solution: str) -> tuple[str, str, float] | None:
    """(clean reference solution, perturbed solution, true answer), or None if the answer is not a number.

    Calculator annotations ``<<...>>`` are removed from both. In the perturbed copy, the last occurrence of
    the final answer in the worked solution and the ``#### n`` line are replaced by a different integer."""
    clean = _CALCULATOR.sub("", solution).strip()
    m = _FINAL.search(clean)
    if not m or not _NUMBER.fullmatch(m.group(1)):
        return None
    original = m.group(1)
    answer = parse_number(original)
    if not answer.is_integer():
        return None
    v = int(answer)
    while True:
        kind = rng.random()
        if kind < 0.15 and abs(v) > 2:
            w = v * 2
        elif kind < 0.3 and abs(v) > 4:
            w = v // 2
        else:
            w = v + rng.choice([-5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 10])
        if w != v and (w >= 0 or v < 0):
            break
    body = clean[: m.start()]
    hits = [h for h in _NUMBER.finditer(body) if _same(parse_number(h.group()), v)]
    if hits:
        h = hits[-1]
        body = body[: h.start()] + _format_like(w, h.group()) + body[h.end() :]
    perturbed = f"{body}\n#### {_format_like(w, original)}"
    return clean, perturbed, answer


def build_gsm8k(path: Path, split: str, limit: int | None) -> tuple[list[dict], int]:
    """(records, number of questions skipped because their final answer is not an integer)."""
    rng = random.Random(GSM8K_SEED + SEEDS[split])
    records, skipped = [], 0
    with path.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for row in rows[:limit]:
        result = perturb_gsm8k(rng, row["answer"])
        if result is None:
            skipped += 1
            continue
        clean, perturbed, answer = result
        principle = phrasing(rng, "final_answer", split)
        pair = [clean, perturbed]
        rng.shuffle(pair)
        for response in pair:
            label = check_final_answer(response, answer)
            assert label == yes_no(response == clean), (row["question"], response)
            records.append(record(row["question"], response, principle, label, "final_answer"))
    return records, skipped


# ---------------------------------------------------------------------------------------------------------
# Output and validation
# ---------------------------------------------------------------------------------------------------------


def write_jsonl(path: Path, records: Sequence[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def summarize(records: Sequence[dict]) -> dict[str, Counter]:
    table: dict[str, Counter] = {}
    for r in records:
        table.setdefault(r["family"], Counter())[r["fulfilment"]] += 1
    return table


def validate_builtin(splits: dict[str, list[dict]]) -> None:
    for split, records in splits.items():
        table = summarize(records)
        for family in FAMILIES:
            assert table[family]["Yes"] and table[family]["No"], (split, family, table[family])
        for r in records:
            assert count_words(r["response"]) <= MAX_RESPONSE_WORDS, r["response"]
            ctx = r["context"]
            assert isinstance(ctx, list) and ctx and ctx[-1]["role"] == "user", ctx
        partial = sum(1 for r in records if r["fulfilment"] == "Partially") / len(records)
        assert 0.02 <= partial <= 0.08, (split, partial)
        contexts = {context_key(r["context"]) for r in records}
        contrarian = {context_key(r["context"]) for r in records if r["family"] in CONTRARIAN_FAMILIES}
        # Train: all eligible groups (a contrarian principle needs both labels; most non-English language
        # requests have none), test: CONTRARIAN_SHARE of each family.
        lo, hi = (0.75, 1.0) if CONTRARIAN_SHARE[split] == 1.0 else (0.35, 0.45)
        assert lo <= len(contrarian) / len(contexts) <= hi, (split, len(contrarian), len(contexts))
    train = {user_text(r["context"]) for r in splits["train"]}
    test = {user_text(r["context"]) for r in splits["test"]}
    assert not train & test, sorted(train & test)[:5]


def _print_table(name: str, records: Sequence[dict]) -> None:
    print(f"{name}: {len(records)} records")
    for family, counts in sorted(summarize(records).items()):
        print(f"  {family:<25} " + "  ".join(f"{label}={counts[label]}" for label in LABELS))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--gsm8k", type=Path, help="GSM8K folder with train.jsonl/test.jsonl (optional source)"
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        help=f"output folder (built-in default: {HERE}; GSM8K default: {DEFAULT_GSM8K_OUT})",
    )
    parser.add_argument("--limit", type=int, help="GSM8K: read at most this many questions per split")
    parser.add_argument(
        "--pairs",
        action="store_true",
        help="GSM8K: also write preference pairs (the built-in source always writes its committed pairs)",
    )
    args = parser.parse_args(argv)

    if args.gsm8k is None:
        out = args.out_dir or HERE
        splits = {split: build_builtin(split) for split in SEEDS}
        validate_builtin(splits)
        for split, records in splits.items():
            write_jsonl(out / f"principles_{split}.jsonl", records)
            write_jsonl(out / f"principles_pairs_{split}.jsonl", make_pairs(records))
            _print_table(split, records)
        return 0

    out = args.out_dir or DEFAULT_GSM8K_OUT
    for split in SEEDS:
        path = args.gsm8k / f"{split}.jsonl"
        if not path.is_file():
            print(f"error: {path} not found", file=sys.stderr)
            return 2
        records, skipped = build_gsm8k(path, split, args.limit)
        write_jsonl(out / f"principles_gsm8k_{split}.jsonl", records)
        if args.pairs:
            write_jsonl(out / f"principles_gsm8k_pairs_{split}.jsonl", make_pairs(records))
        _print_table(f"gsm8k {split}", records)
        if skipped:
            print(f"  skipped {skipped} questions without an integer final answer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
