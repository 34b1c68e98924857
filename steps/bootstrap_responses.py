"""Step: the teacher rewrites responses (improvement methods); a no-op for ``direct``."""

from typing import Annotated, Any

import pandas as pd
from zenml import log_metadata, step

from empathy_distill.config import BootstrapConfig, TeacherConfig
from empathy_distill.datasets import BOOTSTRAP_COLUMNS, lineage_prompt_hash, run_bootstrap
from empathy_distill.teacher import build_teacher
from empathy_distill.teacher.types import TeacherError
from empathy_distill.tracking import log_bootstrap
from materializers import DialogueTableMaterializer


@step(experiment_tracker=True, output_materializers={"bootstrap_log": DialogueTableMaterializer})
def bootstrap_responses(
    dialogues: pd.DataFrame, bootstrap: BootstrapConfig, teacher: TeacherConfig, prompt_hash: str
) -> tuple[Annotated[pd.DataFrame, "bootstrap_log"], Annotated[dict[str, Any], "bootstrap_report"]]:
    """Runs the teacher over the SFT and DPO groups; replies are cached on disk by request hash.

    Args:
        dialogues: the validated dialogue table.
        bootstrap: method, strategy and set sizes.
        teacher: endpoint, model and limits (the key is read from ``teacher.api_key_env``).
        prompt_hash: hash of the templates in use; a parameter so that editing a
            template invalidates ZenML's cache.

    Raises:
        TeacherError: more dialogues failed than ``teacher.max_failed_fraction`` allows.
    """
    if bootstrap.method == "direct":
        report = {"method": "direct", "strategy": "none", "teacher_requests": 0, "prompt_hash": prompt_hash}
        log_bootstrap(report, None)
        return pd.DataFrame(columns=BOOTSTRAP_COLUMNS).astype("string"), report
    log, report = run_bootstrap(dialogues, bootstrap, build_teacher(teacher))
    report["prompt_hash"] = lineage_prompt_hash(bootstrap)
    log_bootstrap(report, teacher.model)
    log_metadata({k: v for k, v in report.items() if isinstance(v, (int, float, str))})
    planned = report["sft_dialogues_planned"] + report["dpo_dialogues_planned"]
    if planned and report["dialogues_error"] / planned > teacher.max_failed_fraction:
        raise TeacherError(
            f"{report['dialogues_error']} of {planned} dialogues failed at the teacher "
            f"(more than teacher.max_failed_fraction={teacher.max_failed_fraction}); first error: {report['first_error']}"
        )
    return log, report
