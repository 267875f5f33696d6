"""RLBFF principle RMs on the tiny Llama: data contract, training, scoring API, reward function, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from helpers import ROOT

from posttrain.data.principle import DEFAULT_TEMPLATE, adapt_principles, build_rm_messages
from posttrain.errors import UserError
from posttrain.evaluation.principles import pair_outcomes
from posttrain.rewards.principle import PrincipleReward, PrincipleRewardModel, yes_no_token_ids
from posttrain.trainers.rlbff_config import RLBFFConfig

LIMIT = "The response is at most 10 words long."


def _records(n=32):
    rows = []
    for i in range(n):
        words = 3 + (i * 7) % 25
        rows.append(
            {
                "context": [{"role": "user", "content": f"Tell me something about number {i}."}],
                "response": " ".join(["word"] * words),
                "principle": LIMIT,
                "fulfilment": "Yes" if words <= 10 else "No",
            }
        )
    return rows


# -- data contract ---------------------------------------------------------------------------------


def test_rm_messages_follow_the_paper():
    msgs = build_rm_messages("What is 2+2?", "4", "The final answer is correct.")
    assert msgs == [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {
            "role": "user",
            "content": "Evaluate the response to the previous prompt in terms of whether it satisfies this "
            "principle: The final answer is correct. Only answer Yes or No.",
        },
    ]
    assert "{principle}" in DEFAULT_TEMPLATE


def test_partially_is_dropped_and_counted_or_mapped():
    rows = _records(4)
    rows[1]["fulfilment"] = "Partially"
    kept, report = adapt_principles(rows, "p.jsonl")
    assert len(kept) == 3 and report.dropped["fulfilment Partially"] == 1
    kept, _ = adapt_principles(rows, "p.jsonl", partially_as="No")
    assert len(kept) == 4 and kept[1]["label"] == 0


def test_helpfulness_principle_is_dropped_and_counted_unless_kept():
    """The paper's HelpSteer3-Principle filtering at load time: the catch-all "helpfulness" principle (any
    case, spacing, final period) is dropped and counted in the data report, as Partially is."""
    rows = _records(5)
    rows[0]["principle"] = "Helpfulness."
    rows[2]["principle"] = "  helpfulness "
    rows[3]["fulfilment"] = "Partially"
    rows[4]["principle"] = "The response explains its helpfulness rating."  # not the catch-all
    kept, report = adapt_principles(rows, "p.jsonl")
    assert [r["principle"] for r in kept] == [rows[1]["principle"], rows[4]["principle"]]
    assert report.dropped == {"principle helpfulness": 2, "fulfilment Partially": 1}
    assert (report.read, report.kept) == (5, 2)
    assert "principle helpfulness" in report.summary()
    kept, report = adapt_principles(rows, "p.jsonl", keep_helpfulness=True)
    assert len(kept) == 4 and report.dropped == {"fulfilment Partially": 1}
    assert RLBFFConfig(output_dir="unused", use_cpu=True).keep_helpfulness is False


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("fulfilment", "Maybe", "record 2: field 'fulfilment' must be Yes, No or Partially, got 'Maybe'"),
        ("principle", "", "record 2: field 'principle' must be a non-empty string"),
        ("principle", None, "record 2: missing field 'principle'"),
        ("response", 3, "record 2: field 'response' must be a string"),
    ],
)
def test_bad_principle_records_name_record_and_field(field, value, message):
    rows = _records(3)
    rows[1][field] = value
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        adapt_principles(rows, "p.jsonl")


def test_yes_no_must_be_single_tokens(tiny_tokenizer):
    yes, no = yes_no_token_ids(tiny_tokenizer)
    assert tiny_tokenizer.decode([yes]) == "Yes" and tiny_tokenizer.decode([no]) == "No"
    with pytest.raises(UserError, match="not a single token .* use form: scalar_head"):
        yes_no_token_ids(tiny_tokenizer, yes="Affirmative-zebra")


# -- training ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_rms(tiny_model_dir, tmp_path_factory):
    """Train each form a few steps through the CLI path; returns {form: output_dir}."""
    from posttrain.train import run_train

    tmp = tmp_path_factory.mktemp("rms")
    data = tmp / "principles.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in _records()) + "\n")
    recipe = tmp / "rm.yaml"
    recipe.write_text(
        f"""# Launch: posttrain train {recipe}
method: rlbff
output_dir: {tmp / "unused"}
model: {{name_or_path: {tiny_model_dir}, dtype: float32}}
data: {{train: {{path: {data}}}, max_length: 256, max_prompt_length: 128}}
training: {{max_steps: 12, per_device_train_batch_size: 8, logging_steps: 1, save_strategy: "no",
           report_to: none, learning_rate: 3.0e-3, seed: 0}}
"""
    )
    outs = {}
    for form in ("yes_no", "scalar_head"):
        out = tmp / form
        summary = run_train(str(recipe), [f"rlbff.form={form}", f"output_dir={out}"], progress=False)
        assert summary["steps"] == 12
        outs[form] = out
    return outs


@pytest.mark.integration
@pytest.mark.parametrize("form", ["yes_no", "scalar_head"])
def test_training_learns_the_principle(trained_rms, form):
    history = json.loads((trained_rms[form] / "log_history.json").read_text())
    logs = [row for row in history if "loss" in row]
    first, last = sum(r["loss"] for r in logs[:3]) / 3, sum(r["loss"] for r in logs[-3:]) / 3
    assert last < first
    assert json.loads((trained_rms[form] / "posttrain_rm.json").read_text())["form"] == form
    rm = PrincipleRewardModel.from_pretrained(str(trained_rms[form]))
    assert rm.form == form
    short = rm.score("Say something.", "word word word", [LIMIT])[0]
    long = rm.score("Say something.", " ".join(["word"] * 24), [LIMIT])[0]
    assert short > long


@pytest.mark.integration
@pytest.mark.parametrize("form", ["yes_no", "scalar_head"])
def test_shared_prefix_equals_separate_calls(trained_rms, form):
    rm = PrincipleRewardModel.from_pretrained(str(trained_rms[form]))
    principles = [LIMIT, "The response is in English.", "Short", "The final answer is correct", "Polite"]
    context = [{"role": "user", "content": "Describe the sea in a few words, please."}]
    response = "The sea is wide, blue and deep. " * 3
    shared, p_yes = rm.score(context, response, principles, return_p_yes=True)
    separate = [rm.score(context, response, [p])[0] for p in principles]
    assert shared == pytest.approx(separate, abs=1e-4)
    assert p_yes == pytest.approx(torch.sigmoid(torch.tensor(shared)).tolist())
    # batched scoring of many items (left padding) agrees too
    batched = rm.score_batch([(context, response), ("Hi", "word")], [principles[:1], principles[:2]])
    assert batched[0] == pytest.approx(separate[:1], abs=1e-4)
    assert batched[1] == pytest.approx(rm.score("Hi", "word", principles[:2]), abs=1e-4)


@pytest.mark.integration
def test_trl_reward_function(trained_rms):
    rm = PrincipleRewardModel.from_pretrained(str(trained_rms["yes_no"]))
    prompts = [[{"role": "user", "content": "Say something."}]] * 2
    completions = [
        [{"role": "assistant", "content": "word word"}],
        [{"role": "assistant", "content": "w " * 20}],
    ]
    by_column = PrincipleReward(rm)
    rewards = by_column(prompts, completions, principle=[LIMIT, [LIMIT, "Short"]])
    assert rewards[0] == pytest.approx(rm.score(prompts[0], "word word", [LIMIT])[0], abs=1e-5)
    both = rm.score(prompts[1], "w " * 20, [LIMIT, "Short"])
    assert rewards[1] == pytest.approx(sum(both) / 2, abs=1e-5)
    weighted = PrincipleReward(rm, principles=[LIMIT, "Short"], weights=[2.0, -1.0])
    value = weighted(["Say something."], ["word word"])[0]
    parts = rm.score("Say something.", "word word", [LIMIT, "Short"])
    assert value == pytest.approx(2 * parts[0] - parts[1], abs=1e-5)
    with pytest.raises(UserError, match="no 'principle' column"):
        by_column(prompts, completions)


@pytest.mark.integration
def test_score_cli(trained_rms, tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text(
        json.dumps({"id": "a", "prompt": "Say something.", "response": "word word"})
        + "\n"
        + json.dumps(
            {"context": [{"role": "user", "content": "Hi"}], "response": "w " * 20, "principle": "Short"}
        )
        + "\n"
    )
    out = tmp_path / "scores.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "posttrain",
        "score",
        "--model",
        str(trained_rms["yes_no"]),
        "--input",
        str(inp),
    ]
    proc = subprocess.run(
        [*cmd, "--principle", LIMIT, "--principle", "Short", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line.get("id") for line in lines] == ["a", None]
    assert all(len(line["rewards"]) == 2 and len(line["p_yes"]) == 2 for line in lines)
    rm = PrincipleRewardModel.from_pretrained(str(trained_rms["yes_no"]))
    assert lines[0]["rewards"] == pytest.approx(
        rm.score("Say something.", "word word", [LIMIT, "Short"]), abs=1e-4
    )
    # a record without a principle, and no --principle: exit 2, one line, nothing written
    bad_out = tmp_path / "bad.jsonl"
    proc = subprocess.run([*cmd, "--out", str(bad_out)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "record 1: no principle" in proc.stderr
    assert "Traceback" not in proc.stderr and not bad_out.exists()


@pytest.mark.integration
def test_rm_bench_end_to_end_with_a_trained_tiny_rm(trained_rms, tmp_path):
    # a small RM-Bench-format file (hub layout: total_dataset.json with a domain field)
    rows = []
    for i, domain in enumerate(["chat", "code", "safety-refuse", "safety-response"]):
        rows.append(
            {
                "id": i,
                "domain": domain,
                "prompt": f"Question {i}?",
                "chosen": ["word", "word word", "word word word"],
                "rejected": [" ".join(["word"] * 20), " ".join(["word"] * 22), " ".join(["word"] * 24)],
            }
        )
    data = tmp_path / "rmb"
    data.mkdir()
    (data / "total_dataset.json").write_text(json.dumps(rows))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "posttrain", "eval", "rm-bench", "--model", str(trained_rms["yes_no"])]
    proc = subprocess.run(
        [*cmd, "--data", str(data), "--principle", LIMIT, "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "overall" in proc.stdout and "missing: math" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    scores = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert len(scores) == 4 and (out / "rm_bench.png").exists()
    # the same scores straight from the Python API
    rm = PrincipleRewardModel.from_pretrained(str(trained_rms["yes_no"]))
    expect = rm.score_batch([("Question 0?", r) for r in rows[0]["chosen"]], [LIMIT])
    assert scores[0]["score_chosen"] == pytest.approx([e[0] for e in expect], abs=1e-4)
    assert set(results["domains"]) == {"chat", "code", "safety"}


@pytest.mark.integration
def test_eval_principles_cli_with_a_baseline(trained_rms, tmp_path, capsys):
    from posttrain.cli import main

    # 6 contexts of 4 responses each (word counts 3..27: mixed Yes/No under LIMIT within most contexts)
    records = []
    for i, r in enumerate(_records(24)):
        context = [{"role": "user", "content": f"Tell me something about topic {i // 4}."}]
        records.append(r | {"context": context, "family": "short" if i // 4 % 2 else "other"})
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "eval"
    model, baseline = str(trained_rms["yes_no"]), str(trained_rms["scalar_head"])
    code = main(
        [
            "eval",
            "principles",
            "--model",
            model,
            "--data",
            str(data),
            "--baseline",
            baseline,
            "--out",
            str(out),
        ]
    )
    assert code == 0
    stdout = capsys.readouterr().out
    assert (
        "model pairwise" in stdout and "baseline pairwise" in stdout and "pairwise model − baseline" in stdout
    )
    summary = json.loads((out / "principle_eval.json").read_text())
    scored = [json.loads(line) for line in (out / "principle_scores.jsonl").read_text().splitlines()]
    base = [
        json.loads(line) for line in (out / "baseline" / "principle_scores.jsonl").read_text().splitlines()
    ]
    # the files hold the rewards the Python API gives, and the summary follows from them
    rm = PrincipleRewardModel.from_pretrained(model)
    assert [s["reward"] for s in scored[:4]] == pytest.approx(
        [r[0] for r in rm.score_batch([(r["context"], r["response"]) for r in records[:4]], [LIMIT])],
        abs=1e-4,
    )
    wins = pairs = 0
    for start in range(0, 24, 4):
        group = scored[start : start + 4]
        for yes in (g["reward"] for g in group if g["label"] == 1):
            for no in (g["reward"] for g in group if g["label"] == 0):
                pairs, wins = pairs + 1, wins + (yes > no)
    assert pairs > 0 and summary["pairs"] == pairs
    assert summary["pairwise_accuracy"] == pytest.approx(wins / pairs)
    assert summary["binary_accuracy"] == pytest.approx(
        sum((s["reward"] > 0) == bool(s["label"]) for s in scored) / len(scored)
    )
    assert set(summary["binary_accuracy_by_family"]) == {"short", "other"}
    base_wins = sum(p["win"] for p in pair_outcomes(base))
    assert summary["vs_baseline"]["pairwise_difference"] == pytest.approx((wins - base_wins) / pairs)
    assert summary["vs_baseline"]["baseline"] == baseline and len(base) == len(scored)


@pytest.mark.integration
@pytest.mark.parametrize("form", ["yes_no", "scalar_head"])
def test_lora_principle_rm_trains_only_the_adapter(tiny_model_dir, tiny_tokenizer, tmp_path, form):
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from posttrain.data.principle import tokenize_principles
    from posttrain.trainers.rlbff_config import RLBFFConfig
    from posttrain.trainers.rlbff_trainer import RLBFFTrainer

    records, _ = adapt_principles(_records(8), "p")
    dataset = tokenize_principles(records, tiny_tokenizer, max_length=256)
    if form == "yes_no":
        model, task = AutoModelForCausalLM.from_pretrained(tiny_model_dir), "CAUSAL_LM"
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            tiny_model_dir, num_labels=1, pad_token_id=0
        )
        task = "SEQ_CLS"
    args = RLBFFConfig(
        output_dir=str(tmp_path),
        form=form,
        max_steps=2,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    peft = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type=task)
    trainer = RLBFFTrainer(
        model, args, train_dataset=dataset, processing_class=tiny_tokenizer, peft_config=peft
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed and all("lora_" in n or "score" in n for n in changed)
    assert any("lora_B" in n for n in changed)


def test_context_grouped_sampler_keeps_contexts_together():
    from posttrain.data.principle import ContextGroupedSampler

    ids = [i % 7 for i in range(40)]  # 7 contexts, records interleaved
    sampler = ContextGroupedSampler(ids, seed=5)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert sorted(order) == list(range(40)) and len(sampler) == 40
        runs = [ids[i] for i in order]
        contexts = [c for k, c in enumerate(runs) if k == 0 or runs[k - 1] != c]
        assert sorted(contexts) == list(range(7))  # each context appears as one consecutive run
        orders.append(contexts)
    assert orders[0] != orders[1] or orders[1] != orders[2]  # reshuffled per epoch
    sampler.set_epoch(0)
    assert [ids[i] for i in sampler][:1] == orders[0][:1]  # same seed and epoch: same order


def test_batch_by_context_feeds_a_context_per_batch(tiny_model_dir, tiny_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    from posttrain.data.principle import ContextGroupedSampler, tokenize_principles
    from posttrain.trainers.rlbff_config import RLBFFConfig
    from posttrain.trainers.rlbff_trainer import RLBFFTrainer

    rows = []
    for i, r in enumerate(_records(12)):  # 3 contexts of 4 records, interleaved in the file
        rows.append(r | {"context": [{"role": "user", "content": f"Context {i % 3}."}]})
    records, _ = adapt_principles(rows, "p")
    dataset = tokenize_principles(records, tiny_tokenizer, max_length=256)
    assert [d["context_id"] for d in dataset] == [0, 1, 2] * 4
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    common = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, report_to="none", use_cpu=True)
    trainer = RLBFFTrainer(
        model,
        RLBFFConfig(**common, batch_by_context=True),
        train_dataset=dataset,
        processing_class=tiny_tokenizer,
    )
    assert isinstance(trainer._get_train_sampler(), ContextGroupedSampler)
    for batch in trainer.get_train_dataloader():
        # one context per batch: every row starts with the same rendered context
        first = [
            row[row != tiny_tokenizer.pad_token_id][:10].tolist() for row in batch["input_ids"]
        ]  # through "Context N."
        assert all(f == first[0] for f in first)
    plain = RLBFFTrainer(model, RLBFFConfig(**common), train_dataset=dataset, processing_class=tiny_tokenizer)
    assert not isinstance(plain._get_train_sampler(), ContextGroupedSampler)


@pytest.mark.integration
def test_principle_rm_is_a_recipe_reward(trained_rms):
    """`drpo.rewards: [principle_rm=PATH]` plugs the RM into GRPO/DRPO."""
    from posttrain.rewards.registry import resolve_reward

    reward = resolve_reward(f"principle_rm={trained_rms['yes_no']}")
    assert reward.__name__ == "principle_rm"
    rm = PrincipleRewardModel.from_pretrained(str(trained_rms["yes_no"]))
    got = reward(["Say something."], ["word word"], principle=[LIMIT])
    assert got == pytest.approx(rm.score("Say something.", "word word", [LIMIT]), abs=1e-5)
