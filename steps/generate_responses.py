"""Step: base and tuned students answer the test prompts; reference responses ride along."""

from typing import Annotated

import mlflow
import pandas as pd
from zenml import step

from empathy_distill.config import GenerationSettings, StudentConfig
from empathy_distill.stages import generation_stage
from empathy_distill.training.adapter import Adapter
from materializers import DialogueTableMaterializer
from steps.console import stage_done


@step(experiment_tracker=True, output_materializers={"generations": DialogueTableMaterializer})
def generate_responses(
    student_base: str,
    dialogues: pd.DataFrame,
    generation: GenerationSettings,
    student: StudentConfig,
    adapter: Adapter | None = None,
    champion: dict[str, str] | None = None,
) -> Annotated[pd.DataFrame, "generations"]:
    """One row per test dialogue: prompt, base and tuned replies, the champion's (when one exists), and the recorded
    responses.

    Args:
        champion: ``{"model", "version"}`` of the registry's champion: it answers the same prompts
            with the same settings, loaded as it is served (the registered pyfunc model).
    """
    champion_uri = f"models:/{champion['model']}/{champion['version']}" if champion else None
    done = generation_stage(
        dialogues, student_base, adapter.path if adapter else None, student, generation, champion_uri
    )
    mlflow.log_metrics(done.metrics())
    mlflow.log_text(done.table.head(20).to_csv(index=False), "generation/sample.csv")
    stage_done(done.summary())
    return done.table
