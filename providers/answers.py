"""How usable each provider's answers are, per purpose (plan, code, reflect), and the order that learns from it.

Every answer a node reads is graded once (:meth:`QuotaAwareChatModel.grade`): ``usable`` (it parsed at
once), ``repaired`` (it did not, a repair prompt's answer did) or ``unusable`` (neither did). The
last :data:`WINDOW` grades per provider × purpose are kept in ``answer_grades``; the asks per purpose
are counted in ``answer_asks`` (the exploration clock, shared by every process of the home).

:func:`learned_order` ranks the candidates by their usable-at-once rate over that window. A provider
with fewer than ``min_samples`` grades counts as perfect until it is known (it is tried, then judged);
equal rates keep the configured order. Every ``explore_every``-th ask of a purpose goes first to the
provider whose last grade is the oldest, so one that got better can win its place back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from free_llm_agent.storage.database import StateDatabase

Outcome = Literal["usable", "repaired", "unusable"]
OUTCOMES: tuple[Outcome, ...] = ("usable", "repaired", "unusable")
WINDOW = 20  # grades kept per provider × purpose: what the rate is computed over


@dataclass(frozen=True)
class Grades:
    """One provider's recent grades for one purpose; ``last`` orders providers by their latest grade."""

    usable: int = 0
    repaired: int = 0
    unusable: int = 0
    last: int = 0

    @property
    def total(self) -> int:
        return self.usable + self.repaired + self.unusable

    @property
    def rate(self) -> float | None:
        """The usable-at-once share, None without any grade."""
        return self.usable / self.total if self.total else None

    def to_json(self) -> dict[str, int | float | None]:
        rate = self.rate
        return {"usable": self.usable, "repaired": self.repaired, "unusable": self.unusable,
                "rate": None if rate is None else round(rate, 3)}


def learned_order(candidates: Sequence[str], grades: Mapping[str, Grades], *, min_samples: int,
                  explore: bool = False) -> list[str]:
    """``candidates`` (in their configured order) best usable-at-once rate first; see the module's text."""

    def score(name: str) -> float:
        got = grades.get(name, Grades())
        return got.usable / got.total if got.total >= min_samples else 1.0

    ranked = sorted(candidates, key=lambda n: -score(n))  # stable: ties keep the configured order
    if explore and len(ranked) > 1:
        stale = min(ranked[1:], key=lambda n: grades.get(n, Grades()).last)
        ranked.remove(stale)
        ranked.insert(0, stale)
    return ranked


class AnswerLog:
    """The grades in the shared state database (SQLite or PostgreSQL)."""

    def __init__(self, db: StateDatabase) -> None:
        self.db = db

    def grade(self, provider: str, purpose: str, outcome: Outcome, now: float) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown answer grade {outcome!r} (known: {', '.join(OUTCOMES)})")
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO answer_grades(ts, provider, purpose, outcome) VALUES (?,?,?,?)",
                         (now, provider, purpose, outcome))
            conn.execute(  # keep the window: the oldest grades beyond it go
                "DELETE FROM answer_grades WHERE provider=? AND purpose=? AND id <= (SELECT id FROM answer_grades"
                " WHERE provider=? AND purpose=? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (provider, purpose, provider, purpose, WINDOW),
            )
            conn.execute("INSERT INTO answer_asks(purpose, asks) VALUES (?, 1)"
                         " ON CONFLICT(purpose) DO UPDATE SET asks=answer_asks.asks+1", (purpose,))

    def asks(self, purpose: str) -> int:
        """Answers graded for ``purpose`` so far (every process of this state)."""
        rows = self.db.query("SELECT asks FROM answer_asks WHERE purpose=?", (purpose,))
        return int(str(rows[0][0])) if rows else 0

    def grades(self, purpose: str | None = None) -> dict[str, dict[str, Grades]]:
        """provider -> purpose -> its recent grades (only ``purpose`` when given)."""
        where, params = ("WHERE purpose=?", (purpose,)) if purpose is not None else ("", ())
        rows = self.db.query(
            "SELECT provider, purpose, COUNT(*) FILTER (WHERE outcome='usable'),"
            " COUNT(*) FILTER (WHERE outcome='repaired'), COUNT(*) FILTER (WHERE outcome='unusable'), MAX(id)"
            f" FROM answer_grades {where} GROUP BY 1, 2 ORDER BY 1, 2",
            params,
        )
        out: dict[str, dict[str, Grades]] = {}
        for provider, what, usable, repaired, unusable, last in rows:
            out.setdefault(str(provider), {})[str(what)] = Grades(
                *(int(str(v)) for v in (usable, repaired, unusable, last)))
        return out

    def for_purpose(self, purpose: str) -> dict[str, Grades]:
        return {provider: per[purpose] for provider, per in self.grades(purpose).items()}
