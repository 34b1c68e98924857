"""The end-to-end distillation pipeline (grows stage by stage).

    empathy-distill run --config configs/demo.yaml
"""


import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from zenml import pipeline

from empathy_distill.config import DataConfig, DistillConfig, ValidationConfig
from empathy_distill.data.hashing import file_fingerprint
from steps import ingest_dialogues, validate_dialogues

logger = logging.getLogger(__name__)


@pipeline(enable_cache=True)
def distill(data: DataConfig, validation: ValidationConfig, source_fingerprint: str) -> None:
    """Steps, in order:

    1. ``ingest_dialogues``: parse the input into long rows.
    2. ``validate_dialogues``: GX suite, quarantine, split, data hash; logged to MLflow.
    """
    raw_rows, rejected_records, read_info = ingest_dialogues(data=data, source_fingerprint=source_fingerprint)
    validate_dialogues(raw_rows, rejected_records, read_info, data=data, validation=validation)


def run_distill(config: DistillConfig, config_path: str | None = None, enable_cache: bool = True) -> list[str]:
    """Runs :func:`distill` on the active stack and returns where to look.

    Raises:
        InputError: the data file is missing (checked before ZenML starts).
    """
    from zenml.client import Client

    from empathy_distill.errors import InputError
    from pipelines.stack import mlflow_tracking_uri

    data_path = Path(config.data.path)
    if not data_path.exists():
        raise InputError(data_path, "file not found")
    data = config.data.model_copy(update={"path": str(data_path.resolve())})
    tracking_uri = mlflow_tracking_uri()
    run_name = f"distill-{config.name}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S-%f}"
    settings = {}
    if config.tracking.experiment:
        settings["experiment_tracker"] = {"experiment_name": config.tracking.experiment}
    run = distill.with_options(enable_cache=enable_cache, run_name=run_name, settings=settings)(
        data=data, validation=config.validation, source_fingerprint=file_fingerprint(data_path)
    )
    run = Client().get_pipeline_run(run.id)
    report = run.steps["validate_dialogues"].outputs["ingest_report"][0].load()
    mlflow_meta = run.steps["validate_dialogues"].run_metadata
    bin_dir = Path(sys.executable).parent
    env = f"ZENML_CONFIG_PATH={os.environ['ZENML_CONFIG_PATH']} " if os.environ.get("ZENML_CONFIG_PATH") else ""
    lines = [
        f"pipeline run: {run.name} ({run.status.value})",
        f"dialogues: {report['dialogues_kept']} kept ({report['train_dialogues']} train / {report['test_dialogues']} test), "
        f"rows kept {report['rows_kept']}, quarantined {report['rows_quarantined']}, data hash {report['data_hash'][:19]}",
        f"MLflow run: {mlflow_meta.get('mlflow_run_id', 'n/a')} in experiment {mlflow_meta.get('mlflow_experiment_id', 'n/a')}",
        "Where to look:",
        f"  MLflow UI:  {bin_dir / 'mlflow'} ui --backend-store-uri {tracking_uri}",
        f"  ZenML CLI:  {env}{bin_dir / 'zenml'} pipeline runs list --name {run.name}",
        f"  ZenML dashboard (optional, needs `pip install 'zenml[server]'`): {env}{bin_dir / 'zenml'} login --local",
    ]
    return lines
