"""training/dpo.py overrides TRL's private ``DPOTrainer._prepare_dataset``: the installed TRL must still have it as
we call it, and a release that changes it must stop training with one line, not train on rows TRL re-tokenized."""

import pytest
from trl import DPOTrainer

from empathy_distill.training.dpo import TRL_PRIVATE_API, check_trl_private_api, pretokenized_dpo_trainer


def test_the_installed_trl_has_the_private_method_we_override():
    check_trl_private_api(DPOTrainer)  # fails here, loudly, on a TRL release that renamed or reshaped it
    trainer = pretokenized_dpo_trainer(DPOTrainer)
    assert TRL_PRIVATE_API[0] in vars(trainer)


def test_a_release_that_reshapes_it_stops_with_one_line():
    class Renamed(DPOTrainer):
        _prepare_dataset = None

    class Reshaped(DPOTrainer):
        def _prepare_dataset(self, dataset, processing_class, args):  # a parameter dropped
            return dataset

    with pytest.raises(RuntimeError, match=r"trl \S+: Renamed._prepare_dataset is gone"):
        pretokenized_dpo_trainer(Renamed)
    with pytest.raises(
        RuntimeError, match=r"Reshaped._prepare_dataset is \('self', 'dataset', 'processing_class', 'args'\)"
    ):
        pretokenized_dpo_trainer(Reshaped)
