"""The trainer's arguments build a TRL config on a CPU in each precision (transformers refuses bf16 on a CPU unless
told the run is on the CPU)."""

from __future__ import annotations

import pytest
import torch

from empathy_distill.config import StageSettings, TrainingConfig
from empathy_distill.training.arguments import trainer_args


@pytest.mark.parametrize("precision", ["float32", "bf16-autocast"])
def test_sft_and_dpo_configs_accept_the_arguments_on_a_cpu(tmp_path, precision):
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the CPU path is not the one taken")
    from trl import DPOConfig, SFTConfig

    cfg = TrainingConfig(precision=precision)
    for config_class in (SFTConfig, DPOConfig):
        args = config_class(**trainer_args(StageSettings(), cfg, tmp_path))
        assert args.bf16 is (precision == "bf16-autocast")
        assert args.device.type == "cpu"
