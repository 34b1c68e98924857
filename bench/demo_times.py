"""The demo's wall time, cold and cached, as a user runs it after installation.

    .venv/bin/python bench/demo_times.py

In a throw-away folder holding the demo's config and sample data (the installed package
runs it), with a fresh ZenML and MLflow store: ``empathy-distill init`` then ``distill``
(cold: the tiny student is built, every step runs), then ``distill`` again with nothing
changed (cached: ZenML reuses every step up to training). The last line is

    demo_cold_s=<seconds> demo_cached_s=<seconds>
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("empathy-distill"))


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "configs").mkdir()
        shutil.copy(ROOT / "configs" / "demo.yaml", work / "configs" / "demo.yaml")
        (work / "data" / "sample").mkdir(parents=True)
        shutil.copy(ROOT / "data" / "sample" / "dialogues.csv", work / "data" / "sample" / "dialogues.csv")
        env = {
            **os.environ,
            "ZENML_CONFIG_PATH": str(work / ".zen-home"),
            "ZENML_ANALYTICS_OPT_IN": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "ZENML_LOGGING_VERBOSITY": "WARN",
        }
        cold = timed(["init"], work, env) + timed(["distill", "--config", "configs/demo.yaml"], work, env)
        cached = timed(["distill", "--config", "configs/demo.yaml"], work, env)
    print(f"cold (init + distill, empty stores): {cold:.1f} s; cached (distill again, nothing changed): {cached:.1f} s")
    print(f"demo_cold_s={cold:.1f} demo_cached_s={cached:.1f}")


if __name__ == "__main__":
    main()
