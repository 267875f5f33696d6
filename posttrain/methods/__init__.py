"""The method registry: what a recipe's ``method:`` key can name.

Each method lives in its own module here (:mod:`~posttrain.methods.cpl`, :mod:`~posttrain.methods.drpo`,
:mod:`~posttrain.methods.rlbff`), which builds one :class:`~posttrain.methods.base.Method`: its config class,
its data, its trainer construction, the evaluations it allows. Adding a method is one module and one entry
below (docs/adding-a-method.md).
"""

from __future__ import annotations

from posttrain.methods import cpl, drpo, rlbff
from posttrain.methods.base import Method

METHODS: dict[str, Method] = {m.name: m for m in (cpl.METHOD, rlbff.METHOD, drpo.METHOD)}


def method_names() -> list[str]:
    return sorted(METHODS)


def get_method(name: str) -> Method:
    return METHODS[name]
