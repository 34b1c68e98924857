"""The evaluation protocol: every pair judged in both orders, by every configured judge.

A comparison is (dialogue, candidate = the tuned student's reply, opponent). Each
judge gives one verdict with the candidate shown first and one with it shown
second; :func:`~empathy_distill.judging.stats.combine_orders` turns the two into a
win, loss, tie or invalid. Per opponent and judge the report holds the win rate
with a 95% Wilson interval, the counts, the position-consistency rate, the invalid
count and the length-controlled win rate; with two or more judges, Cohen's kappa.

A report is ``valid`` only when every configured opponent was judged by every judge
and no (judge, opponent) has more invalid comparisons than ``max_invalid_fraction``;
otherwise ``invalid_reasons`` says why. Nothing is dropped: a win rate with no valid
comparison stays NaN and makes the report invalid.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from empathy_distill.errors import JudgeError
from empathy_distill.judging.stats import CI_METHOD, cohen_kappa, combine_orders, length_controlled_win_rate, position_consistency, win_rate_ci
from empathy_distill.judging.verdict import parse_verdict
from empathy_distill.prompts import load_template, render

logger = logging.getLogger(__name__)


class PairJudge(Protocol):
    """Verdicts (``A``/``B``/``tie``/``None``) for response pairs on the same dialogue."""

    name: str

    def verdicts(self, situations: list[str], utterances: list[str], first: list[str], second: list[str]) -> list[str | None]: ...


@dataclass
class ScorerJudge:
    """The offline scorer as a judge (deterministic: both orders agree)."""

    scorer: Any
    name: str = "scorer"

    def verdicts(self, situations, utterances, first, second):
        from empathy_distill.datasets import user_turn

        contexts = [user_turn(s, u) for s, u in zip(situations, utterances)]
        return self.scorer.verdicts(contexts, first, second)


@dataclass
class LLMJudge:
    """A judge over any OpenAI-compatible endpoint, through the teacher client (cache, retries, budget).

    A request that failed after its retries (endpoint down, refused, budget spent) is
    never a verdict: with ``on_error="fail"`` it raises :class:`JudgeError`; with
    ``"continue"`` it becomes an invalid comparison, counted in ``request_errors``.
    """

    client: Any
    name: str = "llm"
    on_error: str = "fail"
    request_errors: int = 0

    def verdicts(self, situations, utterances, first, second):
        system = load_template("judge_system")
        requests = [
            self.client.request([("system", system), ("user", render("judge", situation=s, utterance=u, response_a=a, response_b=b))], tag=f"judge_{self.name}")
            for s, u, a, b in zip(situations, utterances, first, second)
        ]

        async def run():
            try:
                return await self.client.complete_many(requests, desc=f"judge {self.name}")
            finally:
                await self.client.aclose()

        results = asyncio.run(run())
        failed = [r for r in results if not r.ok]
        self.request_errors += len(failed)
        if failed and self.on_error == "fail":
            raise JudgeError(
                f"judge '{self.name}': {len(failed)} of {len(results)} requests failed ({failed[-1].error}); "
                "set evaluation.on_judge_error=continue to record them as invalid instead"
            )
        return [parse_verdict(r.text) if r.ok else None for r in results]


def judge_both_orders(judge: PairJudge, frame: pd.DataFrame, candidate: str, opponent: str) -> list[tuple[str | None, str | None]]:
    situations, utterances = list(frame["situation"]), list(frame["utterance"])
    cand, opp = list(frame[candidate]), list(frame[opponent])
    both = judge.verdicts(situations * 2, utterances * 2, cand + opp, opp + cand)
    return list(zip(both[: len(cand)], both[len(cand) :]))


def evaluate(frame: pd.DataFrame, judges: Sequence[PairJudge], opponents: dict[str, str], candidate: str = "tuned_response",
             max_invalid_fraction: float = 0.1, skipped_opponents: Sequence[str] = ()) -> dict[str, Any]:
    """The full report for ``candidate`` against each opponent column, by each judge.

    Args:
        frame: one row per test dialogue with ``situation``, ``utterance`` and the response columns.
        judges: the judges to ask.
        opponents: report label -> column, e.g. ``{"base": "base_response", "human": "ref_human"}``.
        candidate: the column of the model under test.
        max_invalid_fraction: above this share of invalid comparisons a (judge, opponent) is not valid.
        skipped_opponents: configured opponents the data has no responses for (they make the report not valid).
    """
    results: dict[str, Any] = {"candidate": candidate, "ci_method": CI_METHOD, "comparisons": []}
    for label, column in opponents.items():
        rows = frame[frame[column].notna() & (frame[column].str.strip() != "")]
        by_judge = {}
        for judge in judges:
            errors_before = getattr(judge, "request_errors", 0)
            pairs = judge_both_orders(judge, rows, candidate, column)
            outcomes = [combine_orders(a, b) for a, b in pairs]
            length_diff = [len(str(c).split()) - len(str(o).split()) for c, o in zip(rows[candidate], rows[column])]
            stats = win_rate_ci(outcomes)
            entry = {
                "opponent": label,
                "judge": judge.name,
                **stats.as_dict(),
                "request_errors": getattr(judge, "request_errors", 0) - errors_before,
                "position_consistency": position_consistency(pairs),
                "length_controlled_win_rate": length_controlled_win_rate(outcomes, length_diff),
                "mean_length_diff_words": float(sum(length_diff) / len(length_diff)) if length_diff else 0.0,
            }
            results["comparisons"].append(entry)
            by_judge[judge.name] = outcomes
        names = list(by_judge)
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                results.setdefault("agreement", []).append({"opponent": label, "judges": [names[i], names[j]], "kappa": cohen_kappa(by_judge[names[i]], by_judge[names[j]])})
    results["max_invalid_fraction"] = max_invalid_fraction
    results["skipped_opponents"] = list(skipped_opponents)
    return mark_validity(results, max_invalid_fraction, skipped_opponents)


def mark_validity(report: dict[str, Any], max_invalid_fraction: float, skipped_opponents: Sequence[str] = ()) -> dict[str, Any]:
    """Sets ``valid`` and ``invalid_reasons``: what would make these win rates unfit to promote on."""
    reasons = [f"opponent '{o}': no responses in this data" for o in skipped_opponents]
    for c in report["comparisons"]:
        where = f"{c['opponent']}/{c['judge']}"
        if c["n"] == 0:
            reasons.append(f"{where}: no comparisons")
        elif c["invalid"] / c["n"] > max_invalid_fraction:
            reasons.append(f"{where}: {c['invalid']} of {c['n']} comparisons invalid ({c['invalid'] / c['n']:.0%} > {max_invalid_fraction:.0%})")
        if c.get("request_errors"):
            reasons.append(f"{where}: {c['request_errors']} judge requests failed")
    if not report["comparisons"]:
        reasons.append("no comparisons at all")
    report["valid"] = not reasons
    report["invalid_reasons"] = reasons
    return report


def report_markdown(report: dict[str, Any]) -> str:
    """The paper-style table: one line per (opponent, judge)."""
    lines = [
        f"## Evaluation of `{report['candidate']}`",
        "",
        f"Valid: {'yes' if report.get('valid') else 'NO (' + '; '.join(report.get('invalid_reasons', [])) + ')'}. "
        f"Intervals: 95% {report.get('ci_method', CI_METHOD)} score intervals, ties counted half.",
        "",
        "| opponent | judge | win rate | 95% CI | W / T / L | invalid | consistency | LC win rate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in report["comparisons"]:
        lines.append(
            f"| {c['opponent']} | {c['judge']} | {c['win_rate']:.3f} | [{c['ci_low']:.3f}, {c['ci_high']:.3f}] | {c['wins']} / {c['ties']} / {c['losses']} "
            f"| {c['invalid']} | {c['position_consistency']:.2f} | {c['length_controlled_win_rate']:.3f} |"
        )
    for a in report.get("agreement", []):
        lines.append(f"\nCohen's kappa ({a['opponent']}, {' vs '.join(a['judges'])}): {a['kappa']:.3f}")
    return "\n".join(lines) + "\n"


def report_plot(report: dict[str, Any], path: str | Path) -> Path:
    """Bar chart of win rates with CI error bars, one bar per (opponent, judge); 0.5 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comps = report["comparisons"]
    labels = [f"vs {c['opponent']}\n({c['judge']})" for c in comps]
    rates = [c["win_rate"] for c in comps]
    err = [[max(c["win_rate"] - c["ci_low"], 0) for c in comps], [max(c["ci_high"] - c["win_rate"], 0) for c in comps]]
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(comps)), 3.4))
    ax.bar(range(len(comps)), rates, yerr=err, capsize=5, color="#4C72B0")
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(comps)), labels, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("win rate (ties = 1/2)")
    ax.set_title(f"{report['candidate']}: win rates, 95% {report.get('ci_method', CI_METHOD)} intervals")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def save_report(report: dict[str, Any], folder: str | Path) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "evaluation.json", "markdown": folder / "evaluation.md", "plot": folder / "win_rates.png"}
    paths["json"].write_text(json.dumps(report, indent=2, default=float))
    paths["markdown"].write_text(report_markdown(report))
    report_plot(report, paths["plot"])
    return paths


OPPONENT_COLUMNS = {"base": "base_response", "human": "ref_human", "champion": "champion_response"}


def build_judges(cfg, dialogues: pd.DataFrame) -> list[PairJudge]:
    """Judges from an :class:`~empathy_distill.config.EvaluationConfig`; the scorer is fitted on train ratings."""
    judges: list[PairJudge] = []
    for judge in cfg.judges:
        if judge.kind == "scorer":
            from empathy_distill.judging.scorer import fit_scorer

            judges.append(ScorerJudge(fit_scorer(dialogues, margin=cfg.scorer_margin, l2=cfg.scorer_l2, cache_dir=cfg.cache_dir), name=judge.name))
        else:
            from empathy_distill.teacher import build_teacher

            if judge.endpoint is None:
                raise ValueError(f"judge '{judge.name}' of kind llm needs an endpoint")
            judges.append(LLMJudge(build_teacher(judge.endpoint), name=judge.name, on_error=cfg.on_judge_error))
    return judges


def evaluation_frame(generations: pd.DataFrame, dialogues: pd.DataFrame) -> pd.DataFrame:
    """Generations joined with each dialogue's situation and utterance."""
    ctx = dialogues.groupby("dialogue_id").agg(situation=("situation", "first"), utterance=("utterance", "first")).reset_index()
    return generations.merge(ctx, on="dialogue_id", how="left")


def run_evaluation(generations: pd.DataFrame, dialogues: pd.DataFrame, cfg) -> dict[str, Any]:
    """Judges the tuned student against the configured opponents that the data has."""
    frame = evaluation_frame(generations, dialogues)
    columns = {**OPPONENT_COLUMNS, "llm": f"ref_{cfg.reference_llm}"}
    opponents = {o: columns[o] for o in cfg.opponents if columns[o] in frame.columns}
    # no champion yet is not a gap in the data: the first registered version has nothing to beat
    skipped = [o for o in cfg.opponents if o not in opponents and o != "champion"]
    if skipped:
        logger.warning("no responses for opponents %s in this data; skipped", skipped)
    report = evaluate(frame, build_judges(cfg, dialogues), opponents, max_invalid_fraction=cfg.max_invalid_fraction, skipped_opponents=skipped)
    report["test_dialogues"] = len(frame)
    champion = frame["champion_version"].dropna().unique() if "champion_version" in frame.columns else []
    report["champion_version"] = str(champion[0]) if len(champion) else None
    return report


def calibrate_judge(table: pd.DataFrame, judge: PairJudge, max_pairs: int = 500, seed: int = 0) -> dict[str, Any]:
    """An LLM judge's pairwise accuracy against human ratings, beside the length baseline.

    Pairs are responses to the same dialogue whose ratings differ (up to ``max_pairs``,
    sampled with ``seed``); the higher-rated one is the candidate, judged in both
    orders, so accuracy = its win rate with the judge's own ties (its ``tie`` verdicts and
    inconsistent orders) counted half; invalid verdicts are excluded and counted.
    """
    from empathy_distill.judging.scorer import rated_pairs

    rated = table[table["rating"].notna()].reset_index(drop=True)
    pairs = rated_pairs(rated)
    higher, lower = rated.iloc[pairs[:, 0]].reset_index(drop=True), rated.iloc[pairs[:, 1]].reset_index(drop=True)
    frame = pd.DataFrame({"dialogue_id": higher["dialogue_id"], "situation": higher["situation"], "utterance": higher["utterance"],
                          "higher": higher["response"], "lower": lower["response"]})
    if len(frame) > max_pairs:
        frame = frame.sample(n=max_pairs, random_state=seed).reset_index(drop=True)
    report = evaluate(frame, [judge], {"lower_rated": "lower"}, candidate="higher")
    comp = report["comparisons"][0]
    longer = [1.0 if len(h.split()) > len(lo.split()) else 0.5 if len(h.split()) == len(lo.split()) else 0.0 for h, lo in zip(frame["higher"], frame["lower"])]
    return {
        "judge": judge.name,
        "pairs": int(len(frame)),
        "judge_accuracy": round(comp["win_rate"], 4),
        "judge_tie_rate": round(comp["ties"] / (comp["n"] - comp["invalid"]), 4) if comp["n"] > comp["invalid"] else float("nan"),
        "ci": [round(comp["ci_low"], 4), round(comp["ci_high"], 4)],
        "ci_method": report["ci_method"],
        "invalid": comp["invalid"],
        "position_consistency": round(comp["position_consistency"], 4),
        "length_baseline_accuracy": round(sum(longer) / len(longer), 4) if longer else float("nan"),
        "length_tie_rate": round(longer.count(0.5) / len(longer), 4) if longer else float("nan"),
    }
