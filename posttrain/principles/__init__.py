"""The RLBFF principle data pipeline: free-text feedback in, binary principle records out.

:mod:`posttrain.principles.extract` (``posttrain principles extract``) prompts an instruction-following model
to turn each annotator's feedback into (principle, evidence, fulfilment) items and filters them as in the
RLBFF paper (Wang et al., arXiv 2509.21319) into the records the principle reward models train on
(:mod:`posttrain.data.principle`).
"""
