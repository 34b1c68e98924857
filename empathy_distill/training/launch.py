"""A training stage on several processes, launched from inside the step (never the whole CLI N times).

``training.num_processes > 1``: the step writes the stage's inputs to a folder and runs
``torchrun --standalone --nproc_per_node N -m empathy_distill.training.launch SPEC``. Each
process runs the same stage function; the Trainer wraps the model in DDP (NCCL on GPUs,
gloo on CPU) and splits the batches; rank 0 alone saves the adapter and writes the
result the step then reads. One pipeline, one step, one adapter.

    python -m empathy_distill.training.launch SPEC   # what each torchrun process runs
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from empathy_distill.config import StudentConfig, TrainingConfig
from empathy_distill.training.dpo import fit_dpo
from empathy_distill.training.resume import StageResult
from empathy_distill.training.sft import fit_sft


def train_stage(
    stage: str,
    base_model: str,
    table: pd.DataFrame,
    cfg: TrainingConfig,
    student: StudentConfig,
    sft_adapter: str | None = None,
    announce=None,
) -> StageResult:
    """SFT or DPO, in this process or across ``cfg.num_processes`` (see the module docstring); ``announce`` gets the
    stage's steps and time per step after its first steps (in this process only: torchrun's go to its log)."""
    if cfg.num_processes <= 1:
        return _run(stage, base_model, table, cfg, student, sft_adapter, announce)
    with tempfile.TemporaryDirectory(prefix=f"{stage}-launch-") as tmp:
        tmp_path = Path(tmp)
        table.to_parquet(tmp_path / "table.parquet")
        spec = {
            "stage": stage,
            "base_model": base_model,
            "table": str(tmp_path / "table.parquet"),
            "cfg": cfg.model_dump(),
            "student": student.model_dump(),
            "sft_adapter": sft_adapter,
            "result": str(tmp_path / "result.json"),
        }
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={cfg.num_processes}",
            "-m",
            "empathy_distill.training.launch",
            str(tmp_path / "spec.json"),
        ]
        log = tmp_path / "launch.log"
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        import torch

        if not torch.cuda.is_available():
            env["ACCELERATE_USE_CPU"] = (
                "true"  # else the Trainer sees no GPU and trains each process alone (gloo DDP on CPU)
            )
        with open(log, "wb") as out:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        if proc.returncode != 0 or not (tmp_path / "result.json").exists():
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-5:])
            raise RuntimeError(
                f"{stage.upper()} on {cfg.num_processes} processes failed (exit {proc.returncode}): {tail}"
            )
        return StageResult(**json.loads((tmp_path / "result.json").read_text()))


def _run(stage, base_model, table, cfg, student, sft_adapter, announce=None) -> StageResult:
    if stage == "sft":
        return fit_sft(base_model, table, cfg, student, announce=announce)

    return fit_dpo(base_model, table, cfg, student, sft_adapter, announce=announce)


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    cfg = TrainingConfig.model_validate(spec["cfg"])
    result = _run(
        spec["stage"],
        spec["base_model"],
        pd.read_parquet(spec["table"]),
        cfg,
        StudentConfig.model_validate(spec["student"]),
        spec["sft_adapter"],
    )
    if int(os.environ.get("RANK", "0")) == 0:
        Path(spec["result"]).write_text(json.dumps(asdict(result)))


if __name__ == "__main__":
    main(sys.argv[1])
