"""The evaluation pipeline on its own: re-judge the latest (or a named) generations with other judges.

empathy-distill evaluate --config configs/demo.yaml [--set evaluation.judges=...]
"""

from zenml import pipeline
from zenml.client import Client

from empathy_distill.config import EvaluationConfig
from steps import evaluate_responses


@pipeline(enable_cache=False)
def evaluate(
    evaluation: EvaluationConfig, generations_version: str | None = None, dialogues_version: str | None = None
) -> None:
    """Steps, in order:

    1. ``evaluate_responses``: pairwise judging of the ``generations`` artifact (latest
       version unless named) against its opponents, with the ``dialogues`` artifact for context.
    """
    client = Client()
    generations = client.get_artifact_version("generations", generations_version)
    dialogues = client.get_artifact_version("dialogues", dialogues_version)
    evaluate_responses(generations, dialogues, evaluation=evaluation)
