"""Step: the teacher rewrites responses (improvement methods); a no-op for ``direct``."""

from typing import Annotated

import pandas as pd
from zenml import log_metadata, step

from empathy_distill.config import BootstrapConfig, TeacherConfig
from empathy_distill.data.reports import BootstrapReport
from empathy_distill.prompts import templates_for
from empathy_distill.registry.prompt_registry import run_prompt_uris
from empathy_distill.stages import require_teacher_success, rewrite_stage
from empathy_distill.teacher import build_teacher
from empathy_distill.teacher.estimate import spent
from empathy_distill.tracking import log_bootstrap
from materializers import DialogueTableMaterializer
from steps.console import stage_done, stage_note


@step(experiment_tracker=True, output_materializers={"bootstrap_log": DialogueTableMaterializer})
def bootstrap_responses(
    dialogues: pd.DataFrame, bootstrap: BootstrapConfig, teacher: TeacherConfig, prompt_hash: str
) -> tuple[Annotated[pd.DataFrame, "bootstrap_log"], Annotated[BootstrapReport, "bootstrap_report"]]:
    """Runs the teacher over the SFT and DPO groups (:func:`~empathy_distill.stages.rewrite_stage`); replies
    are cached on disk by request hash.

    Args:
        dialogues: the validated dialogue table.
        bootstrap: method, strategy and set sizes.
        teacher: endpoint, model and limits (the key is read from ``teacher.api_key_env``).
        prompt_hash: hash of the templates in use; a parameter so that editing a
            template invalidates ZenML's cache.

    Raises:
        TeacherError: more dialogues failed than ``teacher.max_failed_fraction`` allows.
    """
    direct = bootstrap.method == "direct"
    templates = [] if direct else templates_for(bootstrap.strategy, with_initial=bootstrap.method == "improve_llm")
    log, report = rewrite_stage(
        dialogues,
        bootstrap,
        None if direct else build_teacher(teacher),
        lambda plan: stage_note(plan.line()),
        prompts=run_prompt_uris(templates),
    )
    log_bootstrap(report, None if direct else teacher.model, None if direct else log)
    log_metadata({k: v for k, v in report if isinstance(v, (int, float, str))})
    require_teacher_success(report, teacher)
    if direct:
        stage_done("method direct: no teacher requests")
    else:
        stage_done(
            f"{bootstrap.method}/{bootstrap.strategy}: {report.dialogues_ok} dialogues rewritten, "
            f"{report.dialogues_invalid} invalid, "
            f"{report.dialogues_error} failed; {spent(report)}"
        )
    return log, report
