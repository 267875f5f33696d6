"""Evaluators for reward models and policies, each runnable from the CLI (``posttrain eval …``, ``posttrain
score``) and, where it fits the method, after training from a recipe's ``evaluate:`` section.

- :mod:`~posttrain.evaluation.rm_bench`: RM-Bench accuracy (easy / normal / hard, per domain) of a reward model;
- :mod:`~posttrain.evaluation.principles`: binary and pairwise accuracy of a reward model on held-out
  principle records, with bootstrap intervals and a paired comparison against a baseline RM;
- :mod:`~posttrain.evaluation.scoring`: scores records with a principle RM (``posttrain score``);
- :mod:`~posttrain.evaluation.math_eval`: math benchmarks, pass@1 and response length of a policy;
- :mod:`~posttrain.evaluation.mt_bench`: MT-Bench with a local, vLLM or OpenAI-compatible judge;
- :mod:`~posttrain.evaluation.after_training`: the ``evaluate:`` hook a run calls once its model is saved;
- :mod:`~posttrain.evaluation.results`, :mod:`~posttrain.evaluation.tables`: reading results back, printing tables.
"""
