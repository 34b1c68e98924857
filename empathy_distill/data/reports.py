"""What the data stages report, typed: ingestion, the teacher check, bootstrapping (the teacher's rewrites), the
training sets.

Each is logged to MLflow as JSON (``ingest/report.json``, ``bootstrap/report.json``,
``training_sets/report.json``), is a ZenML artifact, and reads back with ``model_validate``.
Its counts become MLflow metrics (:meth:`_Report.counts`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from empathy_distill.judging.stats import WinRate


class _Report(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    def counts(self) -> dict[str, float]:
        """Every count and figure of the report (numbers, not flags; a count the run did not have is left out)."""
        return {
            name: float(value)
            for name, value in self
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        }

    def as_json(self) -> dict[str, Any]:
        """The report as the JSON MLflow keeps."""
        return self.model_dump(mode="json")


class IngestReport(_Report):
    """One ingestion: what was read, kept and quarantined (and why), the split, the data's hash."""

    data_path: str
    format: str
    records_read: int
    source_fingerprint: str | None = None
    """sha256 of the input bytes, where the pipeline read it (its ingest step's cache key)."""
    dialogues_read: int
    responses_read: int
    rows_kept: int
    rows_quarantined: int
    quarantine_reasons: dict[str, int] = Field(default_factory=dict)
    dialogues_kept: int
    train_dialogues: int
    test_dialogues: int
    split_method: str
    sources: dict[str, int] = Field(default_factory=dict)
    emotions: int
    rated_rows: int
    data_hash: str


class TeacherUsage(_Report):
    """What the teacher was sent and cost in one bootstrap, in all and per stage tag (a record of
    :class:`~empathy_distill.teacher.types.Usage`, whose ``as_dict`` it reads)."""

    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    retries: int = 0
    errors: int = 0
    by_stage: dict[str, dict[str, float]] = Field(default_factory=dict)


class BootstrapReport(_Report):
    """The teacher's rewrites for one method and strategy: what was planned, rewritten, refused or failed, what the
    teacher was sent and cost. ``direct`` uses no teacher: its counts of dialogues are None (not logged)."""

    method: str
    strategy: str
    prompt_hash: str = ""
    teacher_requests: int = 0
    teacher_cache_hits: int | None = None
    train_dialogues: int | None = None
    sft_dialogues_planned: int | None = None
    dpo_dialogues_planned: int | None = None
    dialogues_ok: int | None = None
    dialogues_invalid: int | None = None
    dialogues_error: int | None = None
    dialogues_budget: int | None = None
    dialogues_skipped: int | None = None
    not_ok_reasons: dict[str, int] = Field(default_factory=dict)
    first_error: str | None = None
    teacher_usage: TeacherUsage | None = None
    budget_exhausted: str | None = None
    """Which budget stopped the teacher (None: none did)."""
    teacher_plan: dict[str, Any] | None = None
    """The cost estimate announced before the first request (:class:`~empathy_distill.teacher.estimate.Plan`)."""

    @property
    def planned(self) -> int:
        """Dialogues planned for rewriting, SFT and DPO together (0 for ``direct``)."""
        return (self.sft_dialogues_planned or 0) + (self.dpo_dialogues_planned or 0)

    @property
    def cost_usd(self) -> float:
        return self.teacher_usage.cost_usd if self.teacher_usage else 0.0


class TrainingSetReport(_Report):
    """The training sets after validation: rows in and kept, what was quarantined and why, test leakage, each set's
    digest."""

    sft_rows_in: int
    sft_rows: int
    dpo_pairs_in: int
    dpo_pairs: int
    rows_quarantined: int
    quarantine_reasons: dict[str, int] = Field(default_factory=dict)
    test_leakage: int
    sft_train_hash: str
    dpo_train_hash: str

    def digest(self, name: str) -> str:
        """``sft_train`` or ``dpo_train``: that set's digest."""
        return {"sft_train": self.sft_train_hash, "dpo_train": self.dpo_train_hash}[name]


class RewriteWords(_Report):
    """Word counts of the kept rewrites beside their originals, the target and the limit."""

    rewrite_mean: float
    rewrite_max: int
    original_mean: float
    target_mean: int
    limit: int


class CheckReport(_Report):
    """The teacher check (:mod:`empathy_distill.teacher.check`): the teacher's counts on the sample, the words, and
    per judge the rewrite's win rate."""

    method: str
    strategy: str
    dialogues: int
    kept: int
    parse_failures: int
    failed: int
    not_kept_reasons: dict[str, int] = Field(default_factory=dict)
    parse_failure_rate: float
    teacher_requests: int
    teacher_usage: TeacherUsage | None = None
    words: RewriteWords
    judges: dict[str, WinRate] = Field(default_factory=dict)

    def counts(self) -> dict[str, float]:
        """The counts logged as metrics (``teacher_check.<name>``)."""
        return {k: float(getattr(self, k)) for k in ("dialogues", "kept", "parse_failures", "failed")}


class DataReports(_Report):
    """One run's three data reports, as registration and the run's description read them."""

    ingest: IngestReport
    bootstrap: BootstrapReport
    training_sets: TrainingSetReport
