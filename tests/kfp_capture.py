"""The CLI with ZenML's Kubeflow orchestrator talking to a recording KFP client instead of a cluster's API.

    python -m tests.kfp_capture run --config ...      (KFP_CAPTURE_DIR=folder)

Everything ZenML does before it talks to Kubeflow Pipelines runs unchanged: stack validation, the
build, the snapshot on the ZenML server, one container component per step, the KFP compiler. Only
the client that would upload the compiled package to the cluster is replaced: it keeps each
package and the call's arguments in KFP_CAPTURE_DIR (calls.jsonl, one YAML per call).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace


class RecordingKFPClient:
    """The calls ``KubeflowOrchestrator._upload_and_run_pipeline`` makes on ``kfp.Client``, recorded."""

    def __init__(self, out: Path):
        self.out = out

    def _keep(self, call: str, package: str, **arguments) -> str:
        self.out.mkdir(parents=True, exist_ok=True)
        n = sum(1 for _ in self.out.glob("*.yaml")) + 1
        kept = self.out / f"{n:02d}-{call}.yaml"
        shutil.copyfile(package, kept)
        with open(self.out / "calls.jsonl", "a") as log:
            log.write(
                json.dumps(
                    {
                        "call": call,
                        "package": str(kept),
                        **{k: str(v) if v is not None else None for k, v in arguments.items()},
                    }
                )
                + "\n"
            )
        return f"{call}-{n}"

    def get_experiment(self, experiment_name: str, namespace: str | None = None):
        raise ValueError(f"No experiment is found with name {experiment_name}.")  # what kfp says for a new name

    def create_experiment(self, name: str, namespace: str | None = None):
        return SimpleNamespace(experiment_id=f"experiment-{name}")

    def create_recurring_run(self, experiment_id: str, job_name: str, pipeline_package_path: str, **arguments):
        return SimpleNamespace(
            recurring_run_id=self._keep(
                "create_recurring_run",
                pipeline_package_path,
                experiment_id=experiment_id,
                job_name=job_name,
                **arguments,
            )
        )

    def create_run_from_pipeline_package(
        self, pipeline_file: str, arguments=None, run_name=None, enable_caching=None, namespace=None
    ):
        return SimpleNamespace(
            run_id=self._keep(
                "create_run_from_pipeline_package",
                pipeline_file,
                run_name=run_name,
                enable_caching=enable_caching,
                namespace=namespace,
            )
        )


def main(argv: list[str]) -> int:
    from zenml.integrations.kubeflow.orchestrators.kubeflow_orchestrator import KubeflowOrchestrator

    out = Path(os.environ["KFP_CAPTURE_DIR"])
    KubeflowOrchestrator._get_kfp_client = lambda self, settings: RecordingKFPClient(out)
    from app.cli import main as cli

    return cli(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
