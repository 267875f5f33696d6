"""Counts of what loading a data source kept, dropped and truncated (shared by every data loader)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class DropReport:
    """Counts of records read, kept and dropped (by reason) for one data source."""

    source: str
    read: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    truncated: Counter = field(default_factory=Counter)

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    def summary(self) -> str:
        parts = ", ".join(f"{n} {reason}" for reason, n in sorted(self.dropped.items()))
        text = f"{self.source}: {self.kept}/{self.read} records kept" + (
            f" (dropped: {parts})" if parts else ""
        )
        if self.truncated:
            text += "; " + ", ".join(f"{n} with {what}" for what, n in sorted(self.truncated.items()))
        return text
