"""Run by tests/test_vllm.py in a subprocess (vLLM's colocated engine sets up process-global state).

Trains DRPOTrainer with ``use_vllm: true`` (colocate, CPU) on a small random Llama for 4 optimizer steps,
2 updates per rollout, so the engine is synced at step 0 and again after step 2. A callback keeps the
trainer's weights after step 2. After training, the engine scores fixed token sequences
(``prompt_logprobs``) and the script writes, as JSON: the largest |vLLM − trainer| per-token log-prob gap
against those step-2 weights, and the mean shift against the initial weights, plus the logged history and
a check on what the groupwise loss reads from a vLLM batch.

Usage: python vllm_sync_check.py MODEL_DIR OUT_JSON OBJECTIVE
   or: accelerate launch --config_file launch/cpu_2proc.yaml vllm_sync_check.py ... (OUT.rank{0,1}.json)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def parity(completions, **kwargs):
    return [float(len(c[0]["content"]) % 2) for c in completions]


def token_logps(model, sequences):
    import torch

    out = []
    with torch.no_grad():
        for ids in sequences:
            x = torch.tensor([ids])
            logps = torch.log_softmax(model(input_ids=x).logits.float(), dim=-1)[0, :-1]
            out.append(logps.gather(-1, x[0, 1:, None]).squeeze(-1))
    return out


def vllm_logps(llm, sequences):
    import torch
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=0)
    outputs = llm.generate([{"prompt_token_ids": ids} for ids in sequences], params, use_tqdm=False)
    result = []
    for ids, o in zip(sequences, outputs):
        # prompt_logprobs[0] is None (the first token has no context); each entry holds the actual token
        result.append(torch.tensor([o.prompt_logprobs[i][ids[i]].logprob for i in range(1, len(ids))]))
    return result


def main(model_dir: str, out_json: str, objective: str) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from posttrain.trainers.drpo_config import DRPOConfig
    from posttrain.trainers.drpo_trainer import DRPOTrainer

    rows = [
        {"prompt": [{"role": "user", "content": f"What is {i} plus {i}?"}], "answer": str(2 * i)}
        for i in range(16)
    ]
    args = DRPOConfig(
        output_dir=str(Path(out_json).parent / "run"),
        objective=objective,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=12,
        learning_rate=1e-3,  # large on purpose: the engine's log-probs must visibly move
        lr_scheduler_type="constant",
        max_steps=4,
        updates_per_rollout=2,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        seed=0,
        use_vllm=True,
        vllm_mode="colocate",
        vllm_cpu_kv_cache_gb=1,
    )
    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    snapshots = {}

    class KeepStep2(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                snapshots[2] = {k: v.detach().clone() for k, v in kwargs["model"].state_dict().items()}

    trainer = DRPOTrainer(
        model=model,
        reward_funcs=[parity],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
        callbacks=[KeepStep2()],
    )
    seen = {}
    compute_loss = trainer._compute_loss

    def spy(model, inputs):  # what the loss reads from a vLLM batch
        if "old_per_token_logps" not in seen and inputs.get("old_per_token_logps") is not None:
            seen["old_per_token_logps"] = True
            seen["has_is_ratio"] = "importance_sampling_ratio" in inputs
            with torch.no_grad():  # first micro-step of the rollout: the model is the one that sampled it
                own, _, _ = trainer._get_per_token_logps_and_entropies(
                    model,
                    torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1),
                    torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1),
                    inputs["completion_ids"].size(1),
                )
            mask = inputs["completion_mask"].bool()
            seen["old_vs_trainer_max_gap"] = (own - inputs["old_per_token_logps"])[mask].abs().max().item()
            loss = compute_loss(model, inputs)
            if "importance_sampling_ratio" in inputs:
                doubled = dict(inputs, importance_sampling_ratio=inputs["importance_sampling_ratio"] * 2.0)
                seen["loss_depends_on_is_ratio"] = not torch.allclose(compute_loss(model, doubled), loss)
            return loss
        return compute_loss(model, inputs)

    trainer._compute_loss = spy
    # fixed sequences: chat prompts plus a fixed continuation, the same for every objective
    texts = [
        f"What is {i} plus {i}? The answer is {2 * i}, since {i} and {i} make {2 * i}." for i in range(6)
    ]
    sequences = [tok(t)["input_ids"] for t in texts]
    reference = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    # the engine as loaded from disk vs the same weights in the trainer: vLLM's CPU kernels' own noise
    at_load = vllm_logps(trainer.vllm_generation.llm, sequences)
    noise = max((a - b).abs().max().item() for a, b in zip(at_load, token_logps(reference, sequences)))

    trainer.train()

    engine = vllm_logps(trainer.vllm_generation.llm, sequences)
    reference.load_state_dict(snapshots[2])
    synced = token_logps(reference.eval(), sequences)
    reference.load_state_dict(initial)
    before = token_logps(reference.eval(), sequences)
    gap = max((a - b).abs().max().item() for a, b in zip(engine, synced))
    shift = torch.cat([(a - b).abs() for a, b in zip(engine, before)]).mean().item()
    rank = trainer.accelerator.process_index
    if trainer.accelerator.num_processes > 1:  # under accelerate launch: one file per process and engine
        out_json = str(Path(out_json).with_suffix(f".rank{rank}.json"))
    Path(out_json).write_text(
        json.dumps(
            {
                "max_abs_gap_at_load": noise,
                "max_abs_gap_vs_synced": gap,
                "mean_abs_shift_vs_initial": shift,
                "log_history": trainer.state.log_history,
                "seen": seen,
                "world_size": trainer.accelerator.num_processes,
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
