"""The tiny student trains: SFT then DPO for a few steps, adapters change, DPO rewards move,
resume continues the step count, generation answers every prompt, adapters round-trip."""

from __future__ import annotations

import pytest

from empathy_distill.config import DataConfig, GenerationSettings, StageSettings, StudentConfig, TinyStudentConfig, TrainingConfig, ValidationConfig
from empathy_distill.data.ingest import ingest
from empathy_distill.datasets import build_direct
from empathy_distill.config import BootstrapConfig
from empathy_distill.prompts import load_template
from empathy_distill.training.common import AdapterUnchanged
from empathy_distill.training.dpo import train_dpo
from empathy_distill.training.generate import generate_base_and_tuned, prompts_for_test_split
from empathy_distill.training.sft import train_sft
from empathy_distill.training.student import build_tiny_student, chat_texts
from tests.conftest import SAMPLE_DATA


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    table = ingest(SAMPLE_DATA, DataConfig(path=str(SAMPLE_DATA)), ValidationConfig()).table
    sets = build_direct(table, BootstrapConfig())
    train = table[table.split == "train"]
    texts = list(train.situation.unique()) + list(train.utterance.unique()) + list(train.response)
    student = StudentConfig(cache_dir=str(root / "students"), tiny=TinyStudentConfig(pretrain_steps=200))
    chats = chat_texts(sets.sft.to_dict("records"), load_template("student_system"))
    folder, info = build_tiny_student(texts, chats, student)
    return {"root": root, "table": table, "sets": sets, "student": student, "base": str(folder), "info": info, "corpus": (texts, chats)}


def stage(max_steps: int, save_steps: int = 50, lr: float = 1e-3) -> StageSettings:
    return StageSettings(learning_rate=lr, max_steps=max_steps, batch_size=4, save_steps=save_steps)


def test_tiny_student_is_built_once_and_reused(world):
    info = world["info"]
    assert not info["reused"] and info["pretrain_loss_last"] < info["pretrain_loss_first"] / 2
    assert 300 <= info["vocab_size"] <= 4000
    texts, chats = world["corpus"]
    folder, again = build_tiny_student(texts, chats, world["student"])
    assert again["reused"] and str(folder) == world["base"]
    other, fresh = build_tiny_student(texts[:-5], chats, world["student"].model_copy(update={"tiny": TinyStudentConfig(pretrain_steps=5)}))
    assert not fresh["reused"] and other != folder  # other data or settings: another student


def test_sft_then_dpo(world):
    cfg = TrainingConfig(output_dir=str(world["root"] / "runs"), sft=stage(8), dpo=stage(30))
    sft = train_sft(world["base"], world["sets"].sft, cfg, world["student"])
    assert sft.global_step == 8
    losses = [h["loss"] for h in sft.history if "loss" in h]
    assert len(losses) == 8 and all(loss > 0 for loss in losses)
    assert sft.hash_before != sft.hash_after
    dpo = train_dpo(world["base"], world["sets"].dpo, cfg, world["student"], sft.adapter_dir)
    assert dpo.hash_after != sft.hash_after  # DPO moved the SFT adapter
    assert any("rewards/margins" in h for h in dpo.history)
    assert dpo.eval_metrics["rewards/accuracies"] > 0.5  # on its own training pairs, vs the frozen SFT reference
    # a finished stage is reused, not retrained
    assert train_sft(world["base"], world["sets"].sft, cfg, world["student"]).reused

    prompts = prompts_for_test_split(world["table"])
    out = generate_base_and_tuned(world["base"], dpo.adapter_dir, prompts, world["student"], GenerationSettings(max_new_tokens=24, batch_size=8))
    assert len(out) == len(prompts) == 14
    assert (out.base_response.str.strip() != "").all() and (out.tuned_response.str.strip() != "").all()


def test_resume_from_checkpoint_continues_the_step_count(world):
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                raise RuntimeError("simulated crash at step 5")

    cfg = TrainingConfig(output_dir=str(world["root"] / "resume"), sft=stage(8, save_steps=4))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_sft(world["base"], world["sets"].sft, cfg, world["student"], extra_callbacks=[Crash()])
    result = train_sft(world["base"], world["sets"].sft, cfg, world["student"])
    assert result.resumed_from_step == 4
    assert result.global_step == 8
    assert [h["step"] for h in result.history if "loss" in h] == [5, 6, 7, 8]


def test_a_stage_that_changes_nothing_fails_loudly(world):
    from transformers import TrainerCallback

    class ZeroLearningRate(TrainerCallback):  # e.g. a broken schedule: steps run, no weight moves
        def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
            for group in optimizer.param_groups:
                group["lr"] = 0.0

    cfg = TrainingConfig(output_dir=str(world["root"] / "frozen"), sft=stage(2))
    with pytest.raises(AdapterUnchanged, match="SFT: training changed no adapter weight"):
        train_sft(world["base"], world["sets"].sft, cfg, world["student"], extra_callbacks=[ZeroLearningRate()])


def test_adapter_materializer_round_trip(world, tmp_path):
    from empathy_distill.training.adapter import Adapter, folder_hash
    from materializers.adapter_folder import AdapterFolderMaterializer

    cfg = TrainingConfig(output_dir=str(world["root"] / "runs"), sft=stage(8), dpo=stage(30))
    sft = train_sft(world["base"], world["sets"].sft, cfg, world["student"])
    adapter = Adapter(path=sft.adapter_dir, base_model=world["base"], stage="sft", weights_hash=sft.hash_after, global_step=8, rows=149)
    materializer = AdapterFolderMaterializer(str(tmp_path / "artifact"))
    materializer.save(adapter)
    loaded = materializer.load(Adapter)
    assert loaded.model_dump(exclude={"path"}) == adapter.model_dump(exclude={"path"})
    assert folder_hash(loaded.path) == folder_hash(adapter.path)
    assert materializer.extract_metadata(adapter)["weights_hash"] == sft.hash_after
