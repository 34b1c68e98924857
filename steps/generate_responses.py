"""Step: base and tuned students answer the test prompts; reference responses ride along."""

from typing import Annotated

import mlflow
import pandas as pd
from zenml import step

from empathy_distill.config import GenerationSettings, StudentConfig
from empathy_distill.training.adapter import Adapter
from empathy_distill.training.generate import champion_replies, generate_base_and_tuned, prompts_for_test_split
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
    prompts = prompts_for_test_split(dialogues, generation.max_prompts)
    out = generate_base_and_tuned(student_base, adapter.path if adapter else None, prompts, student, generation)
    if champion:
        served = champion_replies(f"models:/{champion['model']}/{champion['version']}", prompts, generation)
        out["champion_response"] = served["response"].astype(str).to_numpy()
        out["champion_finished"] = (served["finish_reason"] == "stop").map({True: "true", False: "false"}).to_numpy()
        out["champion_version"] = str(champion["version"])
    recorded = dialogues[dialogues["split"] == "test"].pivot_table(
        index="dialogue_id", columns="source", values="response", aggfunc="first"
    )
    recorded.columns = [f"ref_{c}" for c in recorded.columns]
    table = (
        prompts.merge(out, on="dialogue_id")
        .merge(recorded, left_on="dialogue_id", right_index=True, how="left")
        .astype("string")
    )
    empty = int((table["tuned_response"].str.strip() == "").sum())
    ran_on = int((table["tuned_finished"] == "false").sum())
    base_ran_on = int((table["base_finished"] == "false").sum())
    mlflow.log_metrics(
        {
            "generation.prompts": float(len(table)),
            "generation.tuned_empty": float(empty),
            "generation.tuned_no_end_of_turn": float(ran_on),
            "generation.base_no_end_of_turn": float(base_ran_on),
        }
    )
    mlflow.log_text(table.head(20).to_csv(index=False), "generation/sample.csv")
    who = "base, tuned and champion" if champion else "base and tuned"
    stage_done(
        f"{len(table)} test prompts answered by {who}; tuned: {empty} empty, {ran_on} ran to max_new_tokens; "
        f"base: {base_ran_on} ran to max_new_tokens"
    )
    return table
