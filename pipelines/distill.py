"""The end-to-end distillation pipeline (grows stage by stage).

    empathy-distill run --config configs/demo.yaml
"""

from zenml import pipeline

from empathy_distill.config import BootstrapConfig, DataConfig, TeacherConfig, ValidationConfig
from pipelines.bootstrap import bootstrap_stage


@pipeline(enable_cache=True)
def distill(
    data: DataConfig, validation: ValidationConfig, bootstrap: BootstrapConfig, teacher: TeacherConfig, source_fingerprint: str, prompt_hash: str
) -> None:
    """Steps, in order:

    1. ``ingest_dialogues``: parse the input into long rows.
    2. ``validate_dialogues``: GX suite, quarantine, split, data hash; logged to MLflow.
    3. ``bootstrap_responses``: the teacher rewrites (improvement methods; none for ``direct``).
    4. ``build_training_sets``: SFT rows and DPO pairs.
    5. ``validate_training_sets``: GX suite over both sets, quarantine, leakage check.
    """
    bootstrap_stage(data, validation, bootstrap, teacher, source_fingerprint, prompt_hash)
