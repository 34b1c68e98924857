"""Step: after the gate's decision, the stable address serves the champion (started once, then it follows)."""

from typing import Annotated

import mlflow
from zenml import log_metadata, step

from deploy.client import Deployment, serve_champion
from empathy_distill.config import RegistryConfig
from empathy_distill.registry.history import PromotionDecision
from steps.console import stage_done


@step(experiment_tracker=True, enable_cache=False)
def deploy_model(decision: PromotionDecision, registry: RegistryConfig) -> Annotated[Deployment, "deployment"]:
    """Makes ``host:port`` answer with the champion after this run's decision: the server is started when none
    answers there; otherwise the step only waits until the server has followed the alias (the registry is the
    trigger; the address never changes)."""
    done = serve_champion(registry.model_name, decision.champion_after, mlflow.get_tracking_uri(), registry.deploy)
    if done.deployed:
        mlflow.set_tags({"deploy.url": done.url, "deploy.version": done.version, "deploy.model_uri": done.model_uri})
        mlflow.log_metric("deploy.ready_seconds", done.ready_seconds)
    log_metadata(done.metadata())
    stage_done(f"serving v{done.version} at {done.url}" if done.deployed else done.reason)
    return done
