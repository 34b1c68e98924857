"""Step: the teacher check before the bootstrap is paid (``teacher.check``); stops the run with one line on failure."""

from typing import Annotated

import pandas as pd
from zenml import log_metadata, step

from empathy_distill.config import BootstrapConfig, EvaluationConfig, TeacherConfig
from empathy_distill.teacher.check import CheckReport, run_check
from empathy_distill.tracking import log_teacher_check
from steps.console import stage_done


@step(experiment_tracker=True)
def check_teacher(
    dialogues: pd.DataFrame,
    bootstrap: BootstrapConfig,
    teacher: TeacherConfig,
    evaluation: EvaluationConfig,
    prompt_hash: str,
) -> Annotated[CheckReport, "teacher_check"]:
    """Rewrites ``teacher.check_dialogues`` train dialogues and judges each rewrite against its original
    (:func:`~empathy_distill.teacher.check.run_check`).

    Raises:
        TeacherError: the rewrites do not beat their originals beyond doubt (the line says by how much).
    """
    report, verdict = run_check(dialogues, bootstrap, teacher, evaluation)
    log_teacher_check(report)
    log_metadata({"teacher_check": verdict.line})
    stage_done(verdict.line)
    verdict.raise_unless_passed()
    return report
