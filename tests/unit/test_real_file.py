"""The real LLMs-vs-Humans file: 2,000 dialogues, 10,000 responses, the paper's 250/1,750 split."""

from __future__ import annotations

import pytest

from empathy_distill.config import DataConfig, ValidationConfig
from empathy_distill.data.ingest import ingest

pytestmark = pytest.mark.real_data


def test_real_file_counts_and_paper_split(real_data):
    result = ingest(real_data, DataConfig(path=str(real_data)), ValidationConfig())
    report = result.report
    assert report.format == "llms_vs_humans"
    assert report.dialogues_read == 2000
    assert report.responses_read == 10000
    assert report.rows_quarantined == 0
    assert (report.test_dialogues, report.train_dialogues) == (250, 1750)
    assert report.split_method == "paper"
    assert report.sources == {s: 2000 for s in ("chatgpt", "gemini", "human", "llama", "mixtral")}
    # the rule itself, recomputed: test dialogues have fewer than two responses rated 3
    top = (
        result.table.assign(top=result.table.rating.eq(3))
        .groupby("dialogue_id")
        .agg(top=("top", "sum"), split=("split", "first"))
    )
    assert ((top.top < 2) == (top.split == "test")).all()
    # no dialogue on both sides
    assert result.table.groupby("dialogue_id")["split"].nunique().max() == 1
