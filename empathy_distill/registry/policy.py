"""The promotion gate: a pure function of an evaluation report, the policy and the current champion.

The gate reads the Wilson interval bounds the evaluation computed (ties half, invalid
verdicts excluded), never a bare win rate, and refuses anything it cannot trust: an
evaluation that is not ``valid``, a ruled opponent that was not judged, too few valid
comparisons, or a "vs champion" figure measured against another version than the one
that holds ``champion`` now. An LLM judge the evaluation did not admit (no calibration on record at
``evaluation.min_judge_agreement``: ``judging/admission.py``) is not counted; the result names the judges it used
and, for each refused one, why.
"""

from __future__ import annotations

import math
import operator
from dataclasses import asdict, dataclass
from typing import Any

from empathy_distill.config import GateRule, PromotionPolicy
from empathy_distill.judging.results import EvaluationReport
from empathy_distill.registry.history import PromotionDecision

_OPS = {">": operator.gt, ">=": operator.ge}


def rules_in_force(policy: PromotionPolicy, champion_version: str | None) -> list[GateRule]:
    """``rules`` while a champion exists; before the first one, the same rules less those vs the champion."""
    if champion_version is not None:
        return list(policy.rules)
    return [r for r in policy.rules if r.opponent != "champion"]


@dataclass(frozen=True)
class GateCheck:
    """One rule checked for one judge: the value checked, the valid comparisons behind it, passed or not."""

    rule: str
    judge: str
    value: float
    valid_comparisons: int
    win_rate: float
    ci: tuple[float, float]
    passed: bool


@dataclass(frozen=True)
class GateResult:
    """The gate's decision on one evaluation report, with the figures it was made on."""

    passed: bool
    reasons: list[str]
    """Why it did not pass (empty when it did)."""
    checks: list[GateCheck]
    """One per (rule, judge)."""
    rules: list[str]
    """The rules in force (a champion rule only when there is a champion)."""
    champion_version: str | None
    judged_against: str | None
    judges_used: list[str]
    judges_refused: dict[str, str]
    """Judge name -> why the gate does not count it (no calibration on record, or too little agreement)."""

    def figures(self) -> dict[str, Any]:
        """What the promotion history keeps of it beside the decision."""
        return {
            "checks": [{**asdict(c), "ci": list(c.ci)} for c in self.checks],
            "rules": self.rules,
            "judges_used": self.judges_used,
            "judges_refused": self.judges_refused,
        }


def gate(report: EvaluationReport, policy: PromotionPolicy, champion_version: str | None) -> GateResult:
    """Checks every rule for every judge: passed, the reasons why not, and the checks (the figures).

    Args:
        report: an evaluation report (``valid``, ``comparisons``, ``champion_version``).
        policy: the rules and the minimum number of valid comparisons.
        champion_version: the version holding ``champion`` now (None: there is none yet).
    """
    reasons: list[str] = []
    checks: list[GateCheck] = []
    if not report.valid:
        reasons.append("evaluation not valid: " + (report.invalid_text() or "no validity recorded"))
    rules = rules_in_force(policy, champion_version)
    if not rules:
        reasons.append("the policy has no rule in force: nothing to clear")
    judged_against = report.champion_version
    if (
        champion_version is not None
        and any(r.opponent == "champion" for r in rules)
        and judged_against != champion_version
    ):
        reasons.append(
            f"judged against champion {'v' + judged_against if judged_against else '(none)'}, "
            f"but v{champion_version} holds champion now: re-evaluate against it"
        )
    refused = report.refused_judges
    comparisons = [c for c in report.comparisons if c.judge not in refused]
    for rule in rules:
        matching = [c for c in comparisons if c.opponent == rule.opponent]
        if not matching:
            judged = bool(report.against(rule.opponent))
            reasons.append(f"{rule.describe()}: " + ("judged by no admitted judge" if judged else "not judged"))
            continue
        for c in matching:
            valid_n = c.valid_n
            value = float(getattr(c, rule.bound))
            passed = (
                not math.isnan(value)
                and _OPS[rule.op](value, rule.threshold)
                and valid_n >= policy.min_valid_comparisons
            )
            checks.append(
                GateCheck(rule.describe(), c.judge, value, valid_n, c.win_rate, (c.ci_low, c.ci_high), passed)
            )
            if valid_n < policy.min_valid_comparisons:
                reasons.append(
                    f"vs {rule.opponent}/{c.judge}: {valid_n} valid comparisons, fewer than "
                    f"{policy.min_valid_comparisons}"
                )
            elif not passed:
                reasons.append(f"{rule.describe()} not met by judge {c.judge}: {rule.bound} = {value:.3f}")
    return GateResult(
        passed=not reasons,
        reasons=reasons,
        checks=checks,
        rules=[r.describe() for r in rules],
        champion_version=champion_version,
        judged_against=judged_against,
        judges_used=sorted({c.judge for c in comparisons}),
        judges_refused=refused,
    )


def record_decision(
    promotions,
    model: str,
    version: str,
    expected: str | None,
    result: GateResult,
    action: str,
    actor: str,
    forced_because: str | None = None,
) -> PromotionDecision:
    """Moves the champion to ``version`` when the gate ``result`` passed (or ``forced_because`` says why it is
    overridden) and writes the decision to the history; see :meth:`Promotions.move_champion`."""
    reasons = result.reasons
    if forced_because is not None:
        reasons = [f"forced: {forced_because}"] + [f"the gate said: {r}" for r in reasons]
    return promotions.move_champion(
        model,
        version,
        expected=expected,
        promote=forced_because is not None or result.passed,
        action=action,
        reasons=reasons,
        figures=result.figures(),
        actor=actor,
    )
