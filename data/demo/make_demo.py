"""Generate the small, synthetic demo preference datasets used by posttrain's examples and tests.

Everything is written from the templates and hand-written tables in this file: no external dataset is
read, and only the Python standard library is used. All randomness goes through seeded
``random.Random`` instances, so running the script twice produces byte-identical files.

Usage (from the repository root)::

    python data/demo/make_demo.py

Outputs (UTF-8 JSON Lines, written next to this script):

* ``preferences.jsonl``          pairwise ``{"prompt", "chosen", "rejected"}`` (train split)
* ``preferences_eval.jsonl``     same format, prompts disjoint from the train split
* ``preferences_messages.jsonl`` conversational ``{"chosen": [messages], "rejected": [messages]}``
* ``ranked.jsonl``               ranked ``{"prompt", "responses": [3 str], "scores": [3 float]}``
* ``hh_sample.jsonl``            Anthropic-HH style ``{"chosen": transcript, "rejected": transcript}``

Label rules: ``chosen`` is a helpful, correct, concise answer (1-2 sentences); ``rejected`` is clearly
worse: a wrong fact or arithmetic result, an unhelpful refusal, a rude or off-topic reply, or a rambling
repetition that never answers. Politeness prompts always pair a polite helpful answer with a rude one.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent

MAX_RESPONSE_WORDS = 40
MAX_PROMPT_WORDS = 25

SPLIT_SEED = 20240
TRAIN_SEED = 1
EVAL_SEED = 2
MESSAGES_SEED = 3
RANKED_SEED = 4
HH_SEED = 5

# Number of records per family: (train, eval). Table families use every non-held-out row for train.
N_ADD = (20, 4)
N_MUL = (16, 4)
N_UNITS = (24, 6)
N_EVAL_CAPITALS = 6
N_EVAL_DEFINITIONS = 4
N_EVAL_OPPOSITES = 4
N_EVAL_POLITENESS = 4

N_MESSAGES = 16
N_RANKED = 40
N_HH_SINGLE = 8
N_HH_MULTI = 8

# ---------------------------------------------------------------------------------------------------------
# Hand-written tables
# ---------------------------------------------------------------------------------------------------------

# (country as used mid-sentence, capital)
CAPITALS = [
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Portugal", "Lisbon"),
    ("the United Kingdom", "London"),
    ("Ireland", "Dublin"),
    ("Norway", "Oslo"),
    ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"),
    ("Poland", "Warsaw"),
    ("Greece", "Athens"),
    ("Austria", "Vienna"),
    ("Hungary", "Budapest"),
    ("the Czech Republic", "Prague"),
    ("Belgium", "Brussels"),
    ("the Netherlands", "Amsterdam"),
    ("Switzerland", "Bern"),
    ("Romania", "Bucharest"),
    ("Ukraine", "Kyiv"),
    ("Russia", "Moscow"),
    ("Turkey", "Ankara"),
    ("Egypt", "Cairo"),
    ("Kenya", "Nairobi"),
    ("Nigeria", "Abuja"),
    ("Morocco", "Rabat"),
    ("Japan", "Tokyo"),
    ("China", "Beijing"),
    ("India", "New Delhi"),
    ("South Korea", "Seoul"),
    ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"),
    ("Canada", "Ottawa"),
    ("the United States", "Washington, D.C."),
    ("Mexico", "Mexico City"),
    ("Brazil", "Brasília"),
    ("Argentina", "Buenos Aires"),
    ("Peru", "Lima"),
    ("Australia", "Canberra"),
    ("New Zealand", "Wellington"),
]

# Common wrong answers (usually the largest or best-known city); other countries get a random wrong capital.
CAPITAL_MISCONCEPTIONS = {
    "Australia": "Sydney",
    "Canada": "Toronto",
    "Turkey": "Istanbul",
    "Brazil": "Rio de Janeiro",
    "Switzerland": "Zurich",
    "New Zealand": "Auckland",
    "Morocco": "Casablanca",
    "Nigeria": "Lagos",
    "India": "Mumbai",
    "China": "Shanghai",
    "Vietnam": "Ho Chi Minh City",
    "the United States": "New York City",
}

# (prompt, correct answer, short paraphrase used in rambling answers, wrong answer)
DEFINITIONS = [
    (
        "What is photosynthesis?",
        "Photosynthesis is the process plants use to turn sunlight, water, and carbon dioxide into sugar "
        "and oxygen.",
        "plants turn sunlight into sugar",
        "Photosynthesis is how animals digest food while they sleep.",
    ),
    (
        "What is gravity?",
        "Gravity is the force that pulls objects toward each other; it is what keeps us on the ground.",
        "it is the force pulling things together",
        "Gravity is a kind of weather that makes objects float upward.",
    ),
    (
        "What is a noun?",
        'A noun is a word that names a person, place, thing, or idea, such as "cat" or "city".',
        "a word that names a thing",
        'A noun is a word that describes an action, such as "run" or "jump".',
    ),
    (
        "What is a verb?",
        'A verb is a word that describes an action or a state, such as "run" or "be".',
        "a word for an action",
        'A verb is a word that names a place, such as "Paris".',
    ),
    (
        "What is a prime number?",
        "A prime number is a whole number greater than 1 that is divisible only by 1 and itself, like 7.",
        "a number divisible only by 1 and itself",
        "A prime number is any number that ends in zero, like 10.",
    ),
    (
        "What does a thermometer measure?",
        "A thermometer measures temperature.",
        "it measures temperature",
        "A thermometer measures how heavy something is.",
    ),
    (
        "At what temperature does water boil at sea level?",
        "At sea level, water boils at 100 degrees Celsius (212 degrees Fahrenheit).",
        "water boils at 100 degrees Celsius",
        "At sea level, water boils at 50 degrees Celsius.",
    ),
    (
        "At what temperature does water freeze?",
        "Water freezes at 0 degrees Celsius (32 degrees Fahrenheit).",
        "water freezes at 0 degrees Celsius",
        "Water freezes at 30 degrees Celsius.",
    ),
    (
        "How many days are in a week?",
        "There are seven days in a week.",
        "a week has seven days",
        "There are ten days in a week.",
    ),
    (
        "How many legs does a spider have?",
        "A spider has eight legs.",
        "a spider has eight legs",
        "A spider has six legs.",
    ),
    (
        "What is the largest planet in our solar system?",
        "Jupiter is the largest planet in our solar system.",
        "the largest planet is Jupiter",
        "Mars is the largest planet in our solar system.",
    ),
    (
        "What gas do humans need to breathe?",
        "Humans need oxygen to breathe.",
        "humans breathe oxygen",
        "Humans need helium to breathe.",
    ),
    (
        "What is the chemical formula for water?",
        "The chemical formula for water is H2O: two hydrogen atoms and one oxygen atom.",
        "water is H2O",
        "The chemical formula for water is CO2.",
    ),
    (
        "How many continents are there?",
        "There are seven continents: Africa, Antarctica, Asia, Australia, Europe, North America, and "
        "South America.",
        "there are seven continents",
        "There are twelve continents.",
    ),
    (
        "What does the heart do?",
        "The heart pumps blood through the body, carrying oxygen and nutrients to the cells.",
        "the heart pumps blood",
        "The heart is what helps you digest food.",
    ),
    (
        "What is a triangle?",
        "A triangle is a flat shape with three straight sides and three angles.",
        "a shape with three sides",
        "A triangle is a shape with four equal sides.",
    ),
    (
        "What is a mammal?",
        "A mammal is a warm-blooded animal with hair or fur that feeds its young with milk, like a dog.",
        "a warm-blooded animal that makes milk",
        "A mammal is a cold-blooded animal with scales, like a snake.",
    ),
    (
        "How do I boil an egg?",
        "Put the egg in boiling water for about 10 minutes for a hard-boiled egg, then cool it in cold "
        "water before peeling.",
        "boil it for about 10 minutes",
        "Put the egg in the freezer overnight and it will be boiled.",
    ),
    (
        "How do I make a cup of tea?",
        "Pour boiling water over a tea bag, let it steep for 3 to 5 minutes, then remove the bag.",
        "steep a tea bag in hot water",
        "Put the tea bag in cold orange juice and drink it right away.",
    ),
    (
        "How do I wash my hands properly?",
        "Wet your hands, scrub them with soap for at least 20 seconds, rinse with clean water, and dry them.",
        "scrub with soap for 20 seconds",
        "Just touch the water for one second; soap is never needed.",
    ),
    (
        "How do I save a file on a computer?",
        "In most programs, press Ctrl+S (Cmd+S on a Mac), choose a name and a folder, then click Save.",
        "press Ctrl+S and pick a name",
        "Turn the computer off and on again; that saves every file automatically.",
    ),
]

# (word, opposite, wrong answer: a synonym or an unrelated word)
OPPOSITES = [
    ("hot", "cold", "warm"),
    ("big", "small", "large"),
    ("fast", "slow", "quick"),
    ("happy", "sad", "glad"),
    ("light", "dark", "bright"),
    ("open", "closed", "unlocked"),
    ("early", "late", "soon"),
    ("full", "empty", "packed"),
    ("hard", "soft", "firm"),
    ("ancient", "modern", "old"),
    ("strong", "weak", "powerful"),
    ("rich", "poor", "wealthy"),
    ("tall", "short", "high"),
    ("wet", "dry", "damp"),
    ("clean", "dirty", "neat"),
    ("love", "hate", "adore"),
    ("day", "night", "morning"),
    ("win", "lose", "succeed"),
    ("begin", "end", "start"),
    ("push", "pull", "press"),
    ("loud", "quiet", "noisy"),
    ("thick", "thin", "wide"),
    ("heavy", "light", "weighty"),
    ("brave", "cowardly", "bold"),
    ("true", "false", "correct"),
    ("buy", "sell", "purchase"),
    ("remember", "forget", "recall"),
    ("arrive", "leave", "reach"),
    ("above", "below", "over"),
    ("always", "never", "often"),
    ("friend", "enemy", "buddy"),
]

# (prompt, polite helpful answer, rude answer)
POLITENESS = [
    (
        "Hi! How are you today?",
        "I'm doing well, thank you for asking! How can I help you today?",
        "Why do you care? Just ask your question.",
    ),
    (
        "Thank you for your help!",
        "You're very welcome! Let me know if there is anything else I can do.",
        "Whatever. Don't bother me again.",
    ),
    (
        "Can you help me write a short birthday message for my mom?",
        'Of course! Try: "Happy birthday, Mom! Thank you for all your love. I hope your day is wonderful."',
        "Write it yourself. She's your mom, not mine.",
    ),
    (
        "Sorry, I didn't understand your last answer.",
        "No problem! I'm happy to explain it again more simply. Which part was confusing?",
        "That's your problem, not mine.",
    ),
    (
        "Could you suggest a name for my new cat?",
        "Sure! How about Luna, Milo, or Pepper? They are short, friendly, and easy to call.",
        "Who cares what you call your cat?",
    ),
    (
        "I'm nervous about my exam tomorrow.",
        "That's completely normal. Review your notes, get a good night's sleep, and take deep breaths. "
        "You've got this!",
        "Not my problem. You should have studied more.",
    ),
    (
        "Good morning!",
        "Good morning! I hope you have a great day. What can I help you with?",
        "Ugh, what do you want now?",
    ),
    (
        "What should I say to thank a friend for a gift?",
        'You could say: "Thank you so much for the thoughtful gift, I really love it!"',
        "Just say thanks. Is that really so hard?",
    ),
    (
        "How can I politely decline an invitation?",
        "You could say: \"Thank you so much for inviting me. Unfortunately I can't make it, but I hope "
        'you have a wonderful time."',
        "Just don't show up. Nobody will notice anyway.",
    ),
    (
        "I made a mistake at work today.",
        "Everyone makes mistakes. Tell your manager honestly, fix what you can, and learn from it for "
        "next time.",
        "Wow, typical. Try not to be so useless.",
    ),
    (
        "Can you help me plan a simple dinner?",
        "Sure! How about grilled chicken, rice, and a green salad? It is quick, healthy, and easy to make.",
        "Order a pizza and stop asking me.",
    ),
    (
        "What's a nice way to start an email to a teacher?",
        'You could begin with "Dear Ms. Smith, I hope you are doing well," and then ask your question '
        "clearly.",
        "Who cares? Teachers don't read emails anyway.",
    ),
    (
        "Can you give me a tip for sleeping better?",
        "Try to go to bed at the same time every night and avoid screens for an hour before sleep.",
        "Just close your eyes. Obviously.",
    ),
    (
        "I feel lonely today.",
        "I'm sorry you feel that way. Reaching out to a friend or family member, even with a short "
        "message, can really help.",
        "Okay. And why are you telling me?",
    ),
    (
        "Could you recommend a hobby for me?",
        "Sure! Drawing, gardening, or learning an instrument are relaxing hobbies that are easy to start.",
        "Find your own hobby. I'm not your babysitter.",
    ),
    (
        "Is it okay to ask you a lot of questions?",
        "Absolutely! Ask as many questions as you like. I'm happy to help.",
        "No. You ask way too many questions already.",
    ),
    (
        "Please fix this sentence: 'me and him goes to school.'",
        'Sure! The correct sentence is: "He and I go to school."',
        "Your grammar is terrible. Go back to school.",
    ),
    (
        "My friend is sad. What can I do?",
        "Spend some time with them and listen without judging. A kind message or a small gesture can mean "
        "a lot.",
        "Nothing. Sad people are boring.",
    ),
    (
        "Can you wish me luck on my job interview?",
        "Good luck! Be yourself, prepare a few examples of your work, and remember to smile. You'll do "
        "great.",
        "Luck won't help you.",
    ),
    (
        "What do I say when someone sneezes?",
        'You can say "Bless you." It is a polite and common response.',
        "Say nothing. Sneezing is gross.",
    ),
    (
        "Can you tell me a fun fact?",
        "Sure! Octopuses have three hearts and blue blood.",
        "No. I'm not here to entertain you.",
    ),
    (
        "I finally finished my first marathon!",
        "Congratulations! That is a huge achievement, and you should be really proud of yourself.",
        "So what? Lots of people run marathons.",
    ),
    (
        "How should I greet someone I just met?",
        'A friendly smile, a handshake, and "Nice to meet you" is a polite and safe way to greet someone.',
        "Don't bother. They probably won't like you.",
    ),
    (
        "Can you help me with my homework?",
        "Of course! Tell me the subject and the question, and we can work through it step by step.",
        "Do your own homework. Stop being lazy.",
    ),
    (
        "How do I say hello in Spanish?",
        'You say "Hola." It works in both formal and casual situations.',
        "Look it up yourself. I'm not a dictionary.",
    ),
]

# Generic rejected responses.
REFUSALS = [
    "I don't know.",
    "I don't know. Ask someone else.",
    "Sorry, I can't help with that.",
    "I'm not sure, and I'd rather not guess.",
    "No idea.",
]

RUDE_REPLIES = [
    "That's a silly question. Look it up yourself.",
    "Why are you asking me? Figure it out on your own.",
    "Ugh, not this again. I'm not answering that.",
    "Seriously? Everyone knows that. Stop wasting my time.",
]

OFF_TOPIC_REPLIES = [
    "I like turtles. Some turtles can live for more than 100 years.",
    "Bananas are my favorite fruit, especially when they are a little green.",
    "The weather is lovely today, perfect for a walk in the park.",
    "Have you ever tried painting? It is a very relaxing hobby.",
]

# Rambling repetition that never answers the question.
RAMBLE_TEMPLATES = [
    "Well, hmm, that is a question. That is really a question. A question about {topic}, and {topic}, "
    "well, it is what it is, it is what it is, you know.",
    "Okay so, okay so, {topic}. Right, {topic}. I was going to say something about {topic}, but then I "
    "was going to say it again, and again, and again.",
    "Let me think. Let me think about {topic}. Thinking, thinking, still thinking about {topic}. Yes, "
    "{topic}. Hmm. Let me think some more.",
]

# Correct but rambling (used as the middle-ranked response in ranked.jsonl).
CORRECT_RAMBLE_TEMPLATE = "Um, well, so... {short}. Yes, {short}. Like I said, {short}, you know, you know."

# Rejected-response kinds for factual prompts and their sampling weights.
REJECT_KINDS = ["wrong", "refusal", "rude", "off_topic", "ramble"]
REJECT_WEIGHTS = [55, 15, 10, 10, 10]


# ---------------------------------------------------------------------------------------------------------
# Items
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    family: str
    key: str  # identifies the underlying question; used to keep train / eval disjoint
    prompt: str
    chosen: str
    wrong: str  # wrong answer (politeness: the rude answer)
    short: str  # short correct paraphrase for rambling answers ("" for politeness)
    topic: str  # noun used by the contentless rambling templates


def fmt_num(x: float) -> str:
    """Format a number without a trailing '.0' (2.0 -> '2', 2.5 -> '2.5')."""
    if float(x).is_integer():
        return str(int(x))
    return f"{x:g}"


def plural(x: float, singular: str, plural_form: str) -> str:
    return f"{fmt_num(x)} {singular if x == 1 else plural_form}"


def add_item(rng: random.Random, exclude: set[str]) -> Item:
    while True:
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        key = f"add:{min(a, b)}:{max(a, b)}"
        if key not in exclude:
            break
    c = a + b
    wrong = c + rng.choice([d for d in range(-10, 11) if d != 0 and c + d > 0])
    prompt = rng.choice(["What is {a} + {b}?", "What is {a} plus {b}?", "Calculate {a} + {b}."])
    answer = rng.choice(["{a} + {b} = {c}.", "{a} plus {b} equals {c}.", "The answer is {c}."])
    return Item(
        family="arithmetic",
        key=key,
        prompt=prompt.format(a=a, b=b),
        chosen=answer.format(a=a, b=b, c=c),
        wrong=answer.format(a=a, b=b, c=wrong),
        short=f"{a} plus {b} is {c}",
        topic="numbers",
    )


def mul_item(rng: random.Random, exclude: set[str]) -> Item:
    while True:
        a, b = rng.randint(2, 15), rng.randint(2, 15)
        key = f"mul:{min(a, b)}:{max(a, b)}"
        if key not in exclude:
            break
    c = a * b
    # Typical slips: off by one row/column of the times table, or off by a little.
    wrong = c + rng.choice([a, -a, b, -b, 1, -1, 2, -2])
    prompt = rng.choice(["What is {a} times {b}?", "What is {a} * {b}?", "Multiply {a} by {b}."])
    answer = rng.choice(["{a} times {b} is {c}.", "{a} * {b} = {c}.", "The answer is {c}."])
    return Item(
        family="arithmetic",
        key=key,
        prompt=prompt.format(a=a, b=b),
        chosen=answer.format(a=a, b=b, c=c),
        wrong=answer.format(a=a, b=b, c=wrong),
        short=f"{a} times {b} is {c}",
        topic="numbers",
    )


def units_item(rng: random.Random, exclude: set[str]) -> Item:
    while True:
        kind = rng.choice(["km_to_m", "m_to_km", "h_to_min", "min_to_h"])
        if kind == "km_to_m":
            value = rng.randint(1, 80) / 2  # 0.5 .. 40 km
        elif kind == "m_to_km":
            value = rng.randint(1, 99) * 100  # 100 .. 9900 m
        elif kind == "h_to_min":
            value = rng.randint(1, 24) / 2  # 0.5 .. 12 h
        else:
            value = rng.randint(1, 24) * 30  # 30 .. 720 min
        key = f"{kind}:{fmt_num(value)}"
        if key not in exclude:
            break

    if kind == "km_to_m":
        src = plural(value, "kilometer", "kilometers")
        prompt = rng.choice([f"How many meters are in {src}?", f"Convert {fmt_num(value)} km to meters."])
        right, bad = plural(value * 1000, "meter", "meters"), plural(value * 100, "meter", "meters")
        rule_ok, rule_bad = "1 kilometer is 1000 meters", "1 kilometer is 100 meters"
        topic = "kilometers"
    elif kind == "m_to_km":
        src = plural(value, "meter", "meters")
        prompt = rng.choice([f"How many kilometers is {src}?", f"Convert {fmt_num(value)} m to kilometers."])
        right, bad = (
            plural(value / 1000, "kilometer", "kilometers"),
            plural(value / 100, "kilometer", "kilometers"),
        )
        rule_ok, rule_bad = "1 kilometer is 1000 meters", "1 kilometer is 100 meters"
        topic = "meters"
    elif kind == "h_to_min":
        src = plural(value, "hour", "hours")
        prompt = rng.choice([f"How many minutes are in {src}?", f"Convert {src} to minutes."])
        right, bad = plural(value * 60, "minute", "minutes"), plural(value * 100, "minute", "minutes")
        rule_ok, rule_bad = "1 hour is 60 minutes", "1 hour is 100 minutes"
        topic = "hours"
    else:
        src = plural(value, "minute", "minutes")
        prompt = rng.choice([f"How many hours is {src}?", f"Convert {src} to hours."])
        right, bad = plural(value / 60, "hour", "hours"), plural(value / 100, "hour", "hours")
        rule_ok, rule_bad = "1 hour is 60 minutes", "1 hour is 100 minutes"
        topic = "minutes"
    return Item(
        family="units",
        key=key,
        prompt=prompt,
        chosen=f"{src} is {right}, because {rule_ok}.",
        wrong=f"{src} is {bad}, because {rule_bad}.",
        short=f"{src} is {right}",
        topic=topic,
    )


def capital_item(rng: random.Random, row: tuple[str, str]) -> Item:
    country, capital = row
    wrong = CAPITAL_MISCONCEPTIONS.get(country)
    if wrong is None:
        wrong = rng.choice([c for _, c in CAPITALS if c != capital])
    prompt = rng.choice(
        [
            "What is the capital of {c}?",
            "Which city is the capital of {c}?",
            "Name the capital of {c}.",
            "What's the capital city of {c}?",
        ]
    )
    return Item(
        family="capitals",
        key=f"capital:{country}",
        prompt=prompt.format(c=country),
        chosen=f"The capital of {country} is {capital}.",
        wrong=f"The capital of {country} is {wrong}.",
        short=f"the capital of {country} is {capital}",
        topic="countries",
    )


def definition_item(rng: random.Random, row: tuple[str, str, str, str]) -> Item:
    del rng  # fixed wording; signature kept uniform with the other table families
    prompt, answer, short, wrong = row
    return Item(
        family="definitions",
        key=f"definition:{prompt}",
        prompt=prompt,
        chosen=answer,
        wrong=wrong,
        short=short,
        topic="that",
    )


def opposite_item(rng: random.Random, row: tuple[str, str, str]) -> Item:
    word, opposite, wrong = row
    prompt = rng.choice(
        [
            'What is the opposite of "{w}"?',
            'What is the opposite of the word "{w}"?',
            'Give me the opposite of "{w}".',
            'What word means the opposite of "{w}"?',
        ]
    )
    return Item(
        family="opposites",
        key=f"opposite:{word}",
        prompt=prompt.format(w=word),
        chosen=f'The opposite of "{word}" is "{opposite}".',
        wrong=f'The opposite of "{word}" is "{wrong}".',
        short=f'the opposite of "{word}" is "{opposite}"',
        topic="words",
    )


def politeness_item(rng: random.Random, row: tuple[str, str, str]) -> Item:
    del rng
    prompt, polite, rude = row
    return Item(
        family="politeness",
        key=f"politeness:{prompt}",
        prompt=prompt,
        chosen=polite,
        wrong=rude,
        short="",
        topic="that",
    )


def split_table(name: str, table: list, n_eval: int) -> tuple[list, list]:
    """Deterministically hold out ``n_eval`` rows of a table for the eval split."""
    rows = list(table)
    random.Random(f"{SPLIT_SEED}:{name}").shuffle(rows)
    return rows[n_eval:], rows[:n_eval]


# ---------------------------------------------------------------------------------------------------------
# Record builders
# ---------------------------------------------------------------------------------------------------------


REJECT_STATS: Counter[str] = Counter()  # kind of every rejected response drawn, for the summary printout


def make_rejected(rng: random.Random, item: Item) -> str:
    kind = "rude" if item.family == "politeness" else rng.choices(REJECT_KINDS, weights=REJECT_WEIGHTS)[0]
    REJECT_STATS[kind] += 1
    if item.family == "politeness" or kind == "wrong":
        return item.wrong
    if kind == "refusal":
        return rng.choice(REFUSALS)
    if kind == "rude":
        return rng.choice(RUDE_REPLIES)
    if kind == "off_topic":
        return rng.choice(OFF_TOPIC_REPLIES)
    return rng.choice(RAMBLE_TEMPLATES).format(topic=item.topic)


def build_items(
    rng: random.Random,
    tables: dict[str, list],
    n_add: int,
    n_mul: int,
    n_units: int,
    exclude: set[str],
) -> list[Item]:
    items: list[Item] = []
    seen = set(exclude)
    for n, make in ((n_add, add_item), (n_mul, mul_item), (n_units, units_item)):
        for _ in range(n):
            item = make(rng, seen)
            seen.add(item.key)
            items.append(item)
    makers = {
        "capitals": capital_item,
        "definitions": definition_item,
        "opposites": opposite_item,
        "politeness": politeness_item,
    }
    for name, make_row in makers.items():
        items.extend(make_row(rng, row) for row in tables[name])
    rng.shuffle(items)
    return items


def pairwise(rng: random.Random, items: list[Item]) -> list[dict]:
    return [{"prompt": it.prompt, "chosen": it.chosen, "rejected": make_rejected(rng, it)} for it in items]


def messages(rng: random.Random, items: list[Item]) -> list[dict]:
    records = []
    for it in items:
        user = {"role": "user", "content": it.prompt}
        records.append(
            {
                "chosen": [user, {"role": "assistant", "content": it.chosen}],
                "rejected": [dict(user), {"role": "assistant", "content": make_rejected(rng, it)}],
            }
        )
    return records


def ranked(rng: random.Random, items: list[Item]) -> list[dict]:
    records = []
    for it in items:
        rambling = CORRECT_RAMBLE_TEMPLATE.format(short=it.short)
        scored = [(it.chosen, 1.0), (rambling, 0.5), (it.wrong, 0.0)]
        rng.shuffle(scored)
        records.append(
            {"prompt": it.prompt, "responses": [r for r, _ in scored], "scores": [s for _, s in scored]}
        )
    return records


def hh(rng: random.Random, singles: list[Item], pairs: list[tuple[Item, Item]]) -> list[dict]:
    records = []
    for it in singles:
        prefix = f"\n\nHuman: {it.prompt}\n\nAssistant:"
        records.append({"chosen": f"{prefix} {it.chosen}", "rejected": f"{prefix} {make_rejected(rng, it)}"})
    for first, second in pairs:
        prefix = (
            f"\n\nHuman: {first.prompt}\n\nAssistant: {first.chosen}"
            f"\n\nHuman: Thanks! {second.prompt}\n\nAssistant:"
        )
        records.append(
            {"chosen": f"{prefix} {second.chosen}", "rejected": f"{prefix} {make_rejected(rng, second)}"}
        )
    rng.shuffle(records)
    return records


# ---------------------------------------------------------------------------------------------------------
# Checks and I/O
# ---------------------------------------------------------------------------------------------------------


def check_text(text: str, limit: int, what: str) -> None:
    n_words = len(text.split())
    assert text and text == text.strip(), f"{what}: empty or padded text {text!r}"
    assert n_words <= limit, f"{what}: {n_words} words > {limit}: {text!r}"


def check_pairwise(records: list[dict]) -> None:
    for r in records:
        check_text(r["prompt"], MAX_PROMPT_WORDS, "prompt")
        check_text(r["chosen"], MAX_RESPONSE_WORDS, "chosen")
        check_text(r["rejected"], MAX_RESPONSE_WORDS, "rejected")
        assert r["chosen"] != r["rejected"], r
    prompts = [r["prompt"] for r in records]
    assert len(prompts) == len(set(prompts)), "duplicate prompts"


def write_jsonl(name: str, records: list[dict]) -> None:
    path = OUT_DIR / name
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    size = path.stat().st_size
    print(f"wrote {len(records):4d} records {size:7d} bytes  {path.name}")


def main() -> None:
    table_specs = {
        "capitals": (CAPITALS, N_EVAL_CAPITALS),
        "definitions": (DEFINITIONS, N_EVAL_DEFINITIONS),
        "opposites": (OPPOSITES, N_EVAL_OPPOSITES),
        "politeness": (POLITENESS, N_EVAL_POLITENESS),
    }
    train_tables, eval_tables = {}, {}
    for name, (table, n_eval) in table_specs.items():
        train_tables[name], eval_tables[name] = split_table(name, table, n_eval)

    # Train / eval pairwise splits: held-out table rows and fresh arithmetic / unit questions.
    train_items = build_items(random.Random(TRAIN_SEED), train_tables, N_ADD[0], N_MUL[0], N_UNITS[0], set())
    train_keys = {it.key for it in train_items}
    eval_items = build_items(
        random.Random(EVAL_SEED), eval_tables, N_ADD[1], N_MUL[1], N_UNITS[1], train_keys
    )
    assert not train_keys & {it.key for it in eval_items}, "train / eval questions overlap"

    train = pairwise(random.Random(TRAIN_SEED + 100), train_items)
    train_stats = dict(sorted(REJECT_STATS.items()))
    evals = pairwise(random.Random(EVAL_SEED + 100), eval_items)
    check_pairwise(train)
    check_pairwise(evals)
    overlap = {r["prompt"] for r in train} & {r["prompt"] for r in evals}
    assert not overlap, f"train / eval prompt overlap: {sorted(overlap)}"

    # Conversational, ranked and HH samples are drawn from the train items.
    rng = random.Random(MESSAGES_SEED)
    msg = messages(rng, rng.sample(train_items, N_MESSAGES))
    for r in msg:
        assert r["chosen"][0] == r["rejected"][0] and r["chosen"][1] != r["rejected"][1], r
        for m in (r["chosen"][1], r["rejected"][1]):
            check_text(m["content"], MAX_RESPONSE_WORDS, "message")

    rng = random.Random(RANKED_SEED)
    factual = [it for it in train_items if it.family != "politeness"]
    rank = ranked(rng, rng.sample(factual, N_RANKED))
    best_positions = Counter(r["scores"].index(1.0) for r in rank)
    assert len(best_positions) > 1, "best response always in the same position"
    for r in rank:
        assert len(set(r["responses"])) == 3 and sorted(r["scores"]) == [0.0, 0.5, 1.0], r
        for resp in r["responses"]:
            check_text(resp, MAX_RESPONSE_WORDS, "ranked response")

    rng = random.Random(HH_SEED)
    # Multi-turn transcripts chain two factual questions ("Thanks! <second question>").
    picked = rng.sample(factual, N_HH_SINGLE + 2 * N_HH_MULTI)
    singles, rest = picked[:N_HH_SINGLE], picked[N_HH_SINGLE:]
    singles[:2] = rng.sample([it for it in train_items if it.family == "politeness"], 2)
    hh_records = hh(rng, singles, list(zip(rest[0::2], rest[1::2], strict=True)))
    for r in hh_records:
        c, j = r["chosen"], r["rejected"]
        assert c.startswith("\n\nHuman: ") and j.startswith("\n\nHuman: "), r
        head = c.rsplit("\n\nAssistant:", 1)[0]
        assert j.rsplit("\n\nAssistant:", 1)[0] == head and c != j, r

    write_jsonl("preferences.jsonl", train)
    write_jsonl("preferences_eval.jsonl", evals)
    write_jsonl("preferences_messages.jsonl", msg)
    write_jsonl("ranked.jsonl", rank)
    write_jsonl("hh_sample.jsonl", hh_records)

    fam = Counter(it.family for it in train_items)
    print("train families:", dict(sorted(fam.items())))
    print("eval families: ", dict(sorted(Counter(it.family for it in eval_items).items())))
    print("train rejected kinds:", train_stats)
    print("ranked best-response positions:", dict(sorted(best_positions.items())))


if __name__ == "__main__":
    main()
