"""Step: after a promotion, serve the new champion beside the live server, switch, stop the old one."""

from typing import Annotated, Any

import mlflow
from zenml import log_metadata, step

from deploy.server import deploy, live
from empathy_distill.config import RegistryConfig


@step(experiment_tracker=True, enable_cache=False)
def deploy_model(decision: dict[str, Any], registry: RegistryConfig) -> Annotated[dict[str, Any], "deployment"]:
    """Starts ``mlflow models serve`` for the champion when this run promoted one; otherwise reports what is live."""
    cfg = registry.deploy
    if not decision["promoted"]:
        current = live(cfg.state_dir)
        record = {"deployed": False, "reason": "no promotion in this run", "live": current}
    else:
        record = {"deployed": True, **deploy(registry.model_name, decision["version"], mlflow.get_tracking_uri(), cfg.host, cfg.port, cfg.state_dir, cfg.ready_timeout_s)}
        mlflow.set_tags({"deploy.url": record["url"], "deploy.version": record["version"], "deploy.model_uri": record["model_uri"]})
        mlflow.log_metric("deploy.ready_seconds", record["ready_seconds"])
    log_metadata({k: str(v) for k, v in record.items() if k in ("deployed", "url", "version", "model_uri", "reason")})
    return record
