"""Great Expectations 1.x suites for dialogue tables, with row-level quarantine.

GX is called directly (ZenML's GX integration requires GX < 1.0). Each expectation
carries a reason code in its ``meta``; GX reports the ``row_id`` of every failing
row, and each failing row goes to quarantine with the first reason in suite order
(so one reason per row). Rows in = rows kept + rows quarantined, always.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pandas as pd

from empathy_distill.data.readers import printable
from empathy_distill.data.schema import SPLITS

logger = logging.getLogger(__name__)

# Spreadsheet formula injection: =..., @..., or +/- followed by a function call.
FORMULA_REGEX = r"^\s*(?:[=@]|[+\-]\s*[A-Za-z_][A-Za-z0-9_.]*\s*\()"
NUL_REGEX = "\x00"
CONTROL_REGEX = "[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]"
INVALID_UTF8_REGEX = "\ufffd"  # readers decode bad bytes to U+FFFD
RATING_REGEX = r"^\s*[123](?:\.0*)?\s*$"
SOURCE_REGEX = r"^[A-Za-z0-9_.\-]+$"


@dataclass(frozen=True)
class Check:
    """One expectation and the quarantine reason it stands for."""

    reason: str
    field: str
    kind: str
    kwargs: tuple[tuple[str, Any], ...] = ()

    def detail(self, value: Any) -> str:
        shown = _preview(value)
        return {
            "missing": f"{self.field} is missing",
            "empty_text": f"{self.field} is empty",
            "too_long": f"{self.field} has {len(str(value)):,} characters (max "
            f"{dict(self.kwargs).get('max_value', 0):,})",
            "nul_byte": f"{self.field} contains a NUL byte",
            "invalid_utf8": f"{self.field} contains bytes that are not UTF-8 (or U+FFFD): {shown}",
            "control_char": f"{self.field} contains a control character",
            "formula": f"{self.field} starts like a spreadsheet formula: {shown}",
            "bad_rating": f"{self.field} is {shown}, expected 1, 2, 3 or empty",
            "bad_source": f"source {shown} is not a plain name",
            "bad_split": f"split {shown} is not train or test",
            "duplicate": "(dialogue_id, source) already seen in an earlier row",
            "inconsistent_dialogue": "situation or utterance differs from the first row of this dialogue",
        }.get(self.reason, f"{self.field} failed {self.kind}: {shown}")


def _preview(value: Any, limit: int = 60) -> str:
    text = printable(value) or ""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def raw_checks(max_text_chars: int = 5000, max_id_chars: int = 200) -> list[Check]:
    """The raw dialogue suite, in priority order."""
    checks: list[Check] = []
    for col in ("dialogue_id", "situation", "utterance", "source", "response"):
        checks.append(Check("missing", col, "ExpectColumnValuesToNotBeNull"))
        checks.append(Check("empty_text", col, "ExpectColumnValueLengthsToBeBetween", (("min_value", 1),)))
    for col in ("dialogue_id", "emotion", "situation", "utterance", "source", "response"):
        checks.append(Check("invalid_utf8", col, "ExpectColumnValuesToNotMatchRegex", (("regex", INVALID_UTF8_REGEX),)))
        checks.append(Check("nul_byte", col, "ExpectColumnValuesToNotMatchRegex", (("regex", NUL_REGEX),)))
        checks.append(Check("control_char", col, "ExpectColumnValuesToNotMatchRegex", (("regex", CONTROL_REGEX),)))
    for col in ("situation", "utterance", "response"):
        checks.append(Check("too_long", col, "ExpectColumnValueLengthsToBeBetween", (("max_value", max_text_chars),)))
        checks.append(Check("formula", col, "ExpectColumnValuesToNotMatchRegex", (("regex", FORMULA_REGEX),)))
    checks.append(
        Check("too_long", "dialogue_id", "ExpectColumnValueLengthsToBeBetween", (("max_value", max_id_chars),))
    )
    checks.append(Check("too_long", "emotion", "ExpectColumnValueLengthsToBeBetween", (("max_value", 64),)))
    checks.append(Check("formula", "emotion", "ExpectColumnValuesToNotMatchRegex", (("regex", FORMULA_REGEX),)))
    checks.append(Check("bad_source", "source", "ExpectColumnValuesToMatchRegex", (("regex", SOURCE_REGEX),)))
    checks.append(Check("bad_rating", "rating_raw", "ExpectColumnValuesToMatchRegex", (("regex", RATING_REGEX),)))
    checks.append(Check("bad_split", "split", "ExpectColumnValuesToBeInSet", (("value_set", list(SPLITS)),)))
    checks.append(
        Check("inconsistent_dialogue", "same_context", "ExpectColumnValuesToBeInSet", (("value_set", [True]),))
    )
    checks.append(Check("duplicate", "dup_rank", "ExpectColumnValuesToBeInSet", (("value_set", [0]),)))
    return checks


def _gx_context():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX sets INFO on some of its own module loggers; quiet them all.
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("great_expectations")] + [
        "great_expectations"
    ]:
        logging.getLogger(name).setLevel(logging.WARNING)

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return gx, ctx


def run_suite(frame: pd.DataFrame, checks: list[Check], suite_name: str) -> dict[int, Check]:
    """Validates ``frame`` (which has a unique ``row_id``) and maps failing row ids to their first check.

    Raises:
        RuntimeError: when GX itself fails on an expectation (a bug, not bad data).
    """
    gx, ctx = _gx_context()
    asset = ctx.data_sources.add_pandas(suite_name).add_dataframe_asset("table")
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": frame})
    suite = gx.ExpectationSuite(name=suite_name)
    for i, check in enumerate(checks):
        expectation_cls = getattr(gx.expectations, check.kind)
        suite.add_expectation(expectation_cls(column=check.field, meta={"check": i}, **dict(check.kwargs)))
    result = batch.validate(
        suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["row_id"]}
    )
    first: dict[int, Check] = {}
    for res in result.results:
        if res.exception_info and res.exception_info.get("raised_exception"):
            raise RuntimeError(
                f"GX failed on {res.expectation_config.type}: {res.exception_info.get('exception_message')}"
            )
        if res.success:
            continue
        index = int(res.expectation_config.meta["check"])
        for hit in res.result.get("unexpected_index_list") or []:
            row_id = int(hit["row_id"])
            if row_id not in first or checks.index(first[row_id]) > index:
                first[row_id] = checks[index]
    return first


@dataclass
class ValidationOutcome:
    """Kept rows, quarantined rows (with reasons) and counts by reason."""

    kept: pd.DataFrame
    quarantined: list[dict[str, Any]]
    reasons: Counter


def validate_raw(rows: pd.DataFrame, max_text_chars: int = 5000) -> ValidationOutcome:
    """Runs the raw suite over unvalidated long rows.

    Args:
        rows: reader output with ``record``, ``rating_raw`` and the schema columns.
        max_text_chars: upper bound on situation, utterance and response length.

    Returns:
        Kept rows (bookkeeping columns still present) and quarantine entries.
    """
    frame = rows.reset_index(drop=True).copy()
    frame["row_id"] = range(len(frame))
    # Derived columns that GX checks like any other: first occurrence of a key,
    # and a dialogue whose context matches its first row.
    frame["dup_rank"] = frame.groupby(["dialogue_id", "source"], dropna=False).cumcount()
    context = pd.Series(list(zip(frame["situation"], frame["utterance"])), index=frame.index, dtype=object)
    frame["same_context"] = (context == context.groupby(frame["dialogue_id"], dropna=False).transform("first")).astype(
        bool
    )
    if frame.empty:
        return ValidationOutcome(frame, [], Counter())
    checks = raw_checks(max_text_chars=max_text_chars)
    failed = run_suite(frame, checks, "raw_dialogues")
    quarantined = []
    for row_id, check in sorted(failed.items()):
        row = frame.iloc[row_id]
        quarantined.append(
            {
                "record": int(row["record"]) if pd.notna(row["record"]) else None,
                "dialogue_id": printable(row["dialogue_id"]),
                "source": printable(row["source"]),
                "field": check.field if check.field not in ("dup_rank", "same_context") else None,
                "reason": check.reason,
                "detail": check.detail(row[check.field] if check.field in frame.columns else None),
            }
        )
    kept = frame.drop(index=list(failed)).drop(columns=["row_id", "dup_rank", "same_context"])
    logger.info("raw validation: %d kept, %d quarantined", len(kept), len(quarantined))
    return ValidationOutcome(kept, quarantined, Counter(q["reason"] for q in quarantined))


def training_checks(kind: str, max_words: int, max_text_chars: int, has_test_ids: bool) -> list[Check]:
    """The SFT or DPO suite, in priority order."""
    texts = ["user", "response"] if kind == "sft" else ["user", "chosen", "rejected"]
    checks: list[Check] = []
    for col in texts:
        checks.append(Check("missing", col, "ExpectColumnValuesToNotBeNull"))
        checks.append(Check("empty_text", col, "ExpectColumnValueLengthsToBeBetween", (("min_value", 1),)))
        checks.append(Check("too_long", col, "ExpectColumnValueLengthsToBeBetween", (("max_value", max_text_chars),)))
    target = "response" if kind == "sft" else "chosen"
    checks.append(
        Check("too_many_words", f"{target}_words", "ExpectColumnValuesToBeBetween", (("max_value", max_words),))
    )
    if has_test_ids:
        checks.append(Check("test_leakage", "in_test", "ExpectColumnValuesToBeInSet", (("value_set", [False]),)))
    if kind == "dpo":
        checks.append(Check("chosen_equals_rejected", "same", "ExpectColumnValuesToBeInSet", (("value_set", [False]),)))
    checks.append(Check("duplicate", "dup_rank", "ExpectColumnValuesToBeInSet", (("value_set", [0]),)))
    return checks


_TRAINING_DETAIL = {
    "too_many_words": "the target reply has more words than allowed",
    "test_leakage": "the dialogue is in the test split",
    "chosen_equals_rejected": "chosen and rejected are the same text",
    "duplicate": "the same row appears earlier",
}


def validate_training_set(
    frame: pd.DataFrame, kind: str, test_ids: set[str], max_words: int = 97, max_text_chars: int = 5000
) -> ValidationOutcome:
    """GX suite over SFT rows (``kind="sft"``) or DPO pairs (``kind="dpo"``); failures quarantined."""
    table = frame.reset_index(drop=True).copy()
    if table.empty:
        return ValidationOutcome(table, [], Counter())
    table["row_id"] = range(len(table))
    target = "response" if kind == "sft" else "chosen"
    table[f"{target}_words"] = table[target].fillna("").astype(str).str.split().str.len()
    table["in_test"] = table["dialogue_id"].isin(test_ids)
    key = ["dialogue_id", "response"] if kind == "sft" else ["dialogue_id", "chosen", "rejected"]
    table["dup_rank"] = table.groupby(key, dropna=False).cumcount()
    if kind == "dpo":
        table["same"] = (
            table["chosen"].fillna("").str.strip().str.lower() == table["rejected"].fillna("").str.strip().str.lower()
        )
    checks = training_checks(kind, max_words, max_text_chars, bool(test_ids))
    failed = run_suite(table, checks, f"{kind}_set")
    quarantined = [
        {
            "set": kind,
            "dialogue_id": printable(table.at[row_id, "dialogue_id"]),
            "field": check.field,
            "reason": check.reason,
            "detail": _TRAINING_DETAIL.get(check.reason) or check.detail(table.at[row_id, check.field]),
        }
        for row_id, check in sorted(failed.items())
    ]
    helper = ["row_id", f"{target}_words", "in_test", "dup_rank"] + (["same"] if kind == "dpo" else [])
    kept = table.drop(index=list(failed)).drop(columns=helper).reset_index(drop=True)
    return ValidationOutcome(kept, quarantined, Counter(q["reason"] for q in quarantined))
