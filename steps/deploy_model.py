"""Step: after a promotion, serve the new champion beside the live server, switch, stop the old one."""

from typing import Annotated, Any

import mlflow
from zenml import log_metadata, step

from deploy.server import deploy, healthy, live
from empathy_distill.config import RegistryConfig
from steps.console import stage_done


@step(experiment_tracker=True, enable_cache=False)
def deploy_model(decision: dict[str, Any], registry: RegistryConfig) -> Annotated[dict[str, Any], "deployment"]:
    """Makes the server answer with the champion after this run's decision: (re)started when it is not the one
    served, or down."""
    cfg = registry.deploy
    target = decision["champion_after"]
    current = live(cfg.state_dir)
    if target is None:
        record = {"deployed": False, "reason": "no champion to serve", "live": current}
    elif current is not None and current["version"] == target and healthy(current["url"]):
        record = {"deployed": False, "reason": f"v{target} is already served at {current['url']}", "live": current}
    else:
        record = {
            "deployed": True,
            **deploy(
                registry.model_name,
                target,
                mlflow.get_tracking_uri(),
                cfg.host,
                cfg.port,
                cfg.state_dir,
                cfg.ready_timeout_s,
                cfg.max_concurrency,
            ),
        }
        mlflow.set_tags(
            {"deploy.url": record["url"], "deploy.version": record["version"], "deploy.model_uri": record["model_uri"]}
        )
        mlflow.log_metric("deploy.ready_seconds", record["ready_seconds"])
    log_metadata({k: str(v) for k, v in record.items() if k in ("deployed", "url", "version", "model_uri", "reason")})
    stage_done(f"serving v{record['version']} at {record['url']}" if record["deployed"] else record["reason"])
    return record
