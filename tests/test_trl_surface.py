"""TRL's private surface (posttrain.trainers.trl_surface): every member posttrain overrides, calls or reads
exists on the installed TRL / transformers with the parameters posttrain expects. A failure names the member
and says what changed; the trl bound in pyproject.toml stays until this passes on a new TRL."""

from __future__ import annotations

import pytest

from posttrain.trainers import trl_surface
from posttrain.trainers.trl_surface import MEMBERS, Member, problem


@pytest.mark.parametrize("member", MEMBERS, ids=lambda m: f"{m.label}[{m.kind}]")
def test_each_listed_trl_member_is_as_posttrain_expects(member):
    found = problem(member)
    assert found is None, f"TRL changed a member posttrain relies on (used by {member.used_by}): {found}"


def test_a_changed_member_is_named():
    renamed = Member("trl:GRPOTrainer", "_compute_loss_v2", "override", ("model", "inputs"))
    resigned = Member("trl:GRPOTrainer", "_compute_loss", "override", ("model", "inputs", "extra"))
    unset = Member("trl:GRPOTrainer", "_no_such_attribute", "attribute")
    key = Member("trl:GRPOTrainer", "no_such_key", "batch key")
    problems = trl_surface.check((renamed, resigned, unset, key))
    assert len(problems) == 4
    assert problems[0] == "trl.GRPOTrainer._compute_loss_v2: missing"
    assert "parameters are now (model, inputs)" in problems[1]
    assert "self._no_such_attribute" in problems[2] and "'no_such_key'" in problems[3]


def test_the_trainers_use_trl_internals_only_through_the_surface_module():
    """No posttrain module imports TRL's internal modules except trl_surface (the list stays complete)."""
    import re
    from pathlib import Path

    import posttrain

    root = Path(posttrain.__file__).parent
    internal = re.compile(r"^\s*(from|import) trl\.(trainer|models|generation|scripts)\b", re.M)
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if path.name != "trl_surface.py" and internal.search(path.read_text())
    ]
    assert not offenders, f"import TRL internals through posttrain.trainers.trl_surface: {offenders}"
