"""Step: after the gate's decision, the stable address serves the champion (started once, then it follows)."""

from typing import Annotated, Any

import mlflow
from zenml import log_metadata, step

from deploy.server import deploy, serving
from empathy_distill.config import RegistryConfig
from steps.console import stage_done


@step(experiment_tracker=True, enable_cache=False)
def deploy_model(decision: dict[str, Any], registry: RegistryConfig) -> Annotated[dict[str, Any], "deployment"]:
    """Makes ``host:port`` answer with the champion after this run's decision: the server is started when none
    answers there; otherwise the step only waits until the server has followed the alias (the registry is the
    trigger; the address never changes)."""
    cfg = registry.deploy
    target = decision["champion_after"]
    url = f"http://{cfg.host}:{cfg.port}"
    current = serving(url)
    if target is None:
        record = {"deployed": False, "reason": "no champion to serve", "url": url}
    elif current is not None and current.get("routes", {}).get("champion") == str(target):
        record = {"deployed": False, "reason": f"v{target} is already served at {url}", "url": url, "version": target}
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
                cfg.poll_s,
                cfg.max_loaded,
                cfg.dtype,
                cfg.merge_adapter,
                cfg.decoder,
            ),
        }
        mlflow.set_tags(
            {"deploy.url": record["url"], "deploy.version": record["version"], "deploy.model_uri": record["model_uri"]}
        )
        mlflow.log_metric("deploy.ready_seconds", record["ready_seconds"])
    log_metadata({k: str(v) for k, v in record.items() if k in ("deployed", "url", "version", "model_uri", "reason")})
    stage_done(f"serving v{record['version']} at {record['url']}" if record["deployed"] else record["reason"])
    return record
