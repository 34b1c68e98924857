"""What an evaluation returns, typed: the report the gate decides on, lineage reads back and people read.

The JSON written to MLflow (``evaluation/evaluation.json``) is ``EvaluationReport.model_dump_json()``;
:meth:`EvaluationReport.read` takes it back (a report written before a field existed gets that
field's default). A win rate with nothing valid behind it is NaN, and is written as NaN, as
``json.dumps`` writes it: never ``null``, never dropped.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from empathy_distill.judging.degenerate import DegenerateCounts
from empathy_distill.judging.stats import CI_METHOD, WIN_RATE_FIELDS, WinRate


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")


class Degenerate(_Model):
    """Both sides' degenerate replies, and what the degenerate rules changed."""

    candidate: DegenerateCounts = Field(default_factory=DegenerateCounts)
    opponent: DegenerateCounts = Field(default_factory=DegenerateCounts)
    verdicts_overruled: int = 0
    opponent_truncated_ties: int = 0


class Comparison(WinRate):
    """One judge on the candidate against one opponent, both orders: the win rate with its interval and counts
    (:class:`~empathy_distill.judging.stats.WinRate`'s fields), and what else was measured on the pairs."""

    model_config = ConfigDict(frozen=False, extra="forbid", ser_json_inf_nan="constants")

    opponent: str
    judge: str
    request_errors: int = 0
    position_consistency: float = float("nan")
    length_controlled_win_rate: float = float("nan")
    mean_length_diff_words: float = 0.0
    degenerate: Degenerate = Field(default_factory=Degenerate)

    @classmethod
    def of(cls, opponent: str, judge: str, rate: WinRate, **extras: Any) -> Comparison:
        return cls(opponent=opponent, judge=judge, **rate.as_dict(), **extras)

    @property
    def valid_n(self) -> int:
        """Comparisons with a verdict in both orders (``n`` less the invalid)."""
        return self.n - self.invalid

    @property
    def judged(self) -> int:
        """Wins, ties and losses: the comparisons behind the win rate."""
        return self.wins + self.ties + self.losses

    def figures(self) -> dict[str, float | int]:
        """The win rate's figures (:class:`~empathy_distill.judging.stats.WinRate`'s fields), as numbers."""
        return {k: getattr(self, k) for k in WIN_RATE_FIELDS}


class Agreement(_Model):
    """Cohen's kappa between two judges on one opponent."""

    opponent: str
    judges: list[str]
    kappa: float


class Admission(_Model):
    """An LLM judge's admission to the gate: who it is, admitted or not, why, the calibration it rests on."""

    identity: dict[str, str] = Field(default_factory=dict)
    admitted: bool
    reason: str
    calibration: dict[str, Any] | None = None


class EvaluationReport(_Model):
    """The whole evaluation of one candidate: every (opponent, judge) comparison, the judges' agreement, whether it
    is valid to promote on (and why not), and what it was judged against."""

    candidate: str
    ci_method: str = CI_METHOD
    comparisons: list[Comparison] = Field(default_factory=list)
    agreement: list[Agreement] = Field(default_factory=list)
    max_invalid_fraction: float = 0.1
    max_degenerate_fraction: float = 0.05
    skipped_opponents: list[str] = Field(default_factory=list)
    valid: bool = False
    invalid_reasons: list[str] = Field(default_factory=list)
    test_dialogues: int = 0
    judge_admission: dict[str, Admission] = Field(default_factory=dict)
    champion_version: str | None = None
    label: str = ""
    registered_judges: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def read(cls, text: str | bytes) -> EvaluationReport:
        """A report from its JSON (``evaluation.json``)."""
        return cls.model_validate_json(text)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @property
    def refused_judges(self) -> dict[str, str]:
        """Judge name -> why it was refused, for each LLM judge the gate does not count."""
        return {name: a.reason for name, a in self.judge_admission.items() if not a.admitted}

    @property
    def judges(self) -> list[str]:
        """The judges that gave a comparison, sorted."""
        return sorted({c.judge for c in self.comparisons})

    def against(self, opponent: str) -> list[Comparison]:
        return [c for c in self.comparisons if c.opponent == opponent]

    def invalid_text(self) -> str:
        """The reasons it is not valid, in one line (empty when it is)."""
        return "; ".join(self.invalid_reasons)
