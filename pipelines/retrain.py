"""The retrain pipeline: what a schedule runs on an orchestrator that schedules (Kubeflow, Kubernetes, Vertex, ...).

    empathy-distill distill --config configs/paper.yaml --set schedule.cron='0 3 * * 1' --set
    stack=configs/stacks/kubeflow.yaml

One step, the retrain gate; it starts ``distill`` only when an input differs from the champion's.
"""

from zenml import pipeline

from empathy_distill.config import DistillConfig
from steps import retrain_gate


@pipeline(enable_cache=False)
def retrain(config: DistillConfig, force: bool = False) -> None:
    """Steps: ``retrain_gate`` (inputs vs the champion's; submits ``distill`` when they differ)."""
    retrain_gate(config=config, force=force)
