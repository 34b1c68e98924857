"""Materializer for the project's tables (dialogues, quarantine, training sets).

Storage is ZenML's pandas one (parquet, not pickle). The metadata is ours: row
and dialogue counts, split sizes and quarantine reasons, shown in the dashboard,
and it works on empty tables (ZenML's numeric summary fails on an empty quarantine).
"""

from typing import Any, ClassVar

import pandas as pd
from zenml.integrations.pandas.materializers.pandas_materializer import PandasMaterializer


class DialogueTableMaterializer(PandasMaterializer):
    """Parquet storage with counts as metadata."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (pd.DataFrame,)

    def extract_metadata(self, df: pd.DataFrame) -> dict[str, Any]:
        meta: dict[str, Any] = {"rows": int(len(df)), "columns": [str(c) for c in df.columns]}
        if "dialogue_id" in df.columns:
            meta["dialogues"] = int(df["dialogue_id"].nunique())
        for column in ("split", "source", "reason"):
            if column in df.columns and len(df):
                meta[f"{column}_counts"] = {str(k): int(v) for k, v in df[column].value_counts().items()}
        return meta
