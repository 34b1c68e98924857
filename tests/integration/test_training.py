"""The tiny student trains: SFT then DPO for a few steps, adapters change, DPO rewards move,
resume continues the step count, generation answers every prompt, adapters round-trip."""

from __future__ import annotations

import re

import pytest

from empathy_distill.config import (
    BootstrapConfig,
    DataConfig,
    GenerationSettings,
    StageSettings,
    StudentConfig,
    TinyStudentConfig,
    TrainingConfig,
    ValidationConfig,
)
from empathy_distill.data.ingest import ingest
from empathy_distill.stages import bootstrap_training_sets, student_stage
from empathy_distill.training.checks import AdapterUnchanged
from empathy_distill.training.dpo import fit_dpo
from empathy_distill.training.generate import generate_base_and_tuned, prompts_for_test_split
from empathy_distill.training.sft import fit_sft
from empathy_distill.training.student import build_tiny_student
from tests.conftest import SAMPLE_DATA


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    table = ingest(SAMPLE_DATA, DataConfig(path=str(SAMPLE_DATA)), ValidationConfig()).table
    sets = bootstrap_training_sets(table, BootstrapConfig())
    student = StudentConfig(cache_dir=str(root / "students"), tiny=TinyStudentConfig(pretrain_steps=200))
    base, info = student_stage(table, [sets.sft, sets.dpo], student)
    from empathy_distill.training.warmup import build_warmup_corpus

    corpus = build_warmup_corpus(table, [sets.sft, sets.dpo])
    return {
        "root": root,
        "table": table,
        "sets": sets,
        "student": student,
        "base": base,
        "info": info,
        "corpus": (corpus.units, corpus.chats),
    }


def stage(max_steps: int, save_steps: int = 50, lr: float = 1e-3) -> StageSettings:
    return StageSettings(learning_rate=lr, max_steps=max_steps, batch_size=4, save_steps=save_steps)


def test_tiny_student_is_built_once_and_reused(world):
    info = world["info"]
    assert not info["reused"] and info["pretrain_loss_last"] < info["pretrain_loss_first"] / 2
    assert 300 <= info["vocab_size"] <= 4000
    texts, chats = world["corpus"]
    folder, again = build_tiny_student(texts, chats, world["student"])
    assert again["reused"] and str(folder.resolve()) == world["base"]
    other, fresh = build_tiny_student(
        texts[:-5], chats, world["student"].model_copy(update={"tiny": TinyStudentConfig(pretrain_steps=5)})
    )
    assert not fresh["reused"] and other != folder  # other data or settings: another student


def test_sft_then_dpo(world):
    cfg = TrainingConfig(output_dir=str(world["root"] / "runs"), sft=stage(30, lr=5e-3), dpo=stage(12))
    said = []
    sft = fit_sft(world["base"], world["sets"].sft, cfg, world["student"], announce=said.append)
    assert sft.global_step == 30
    # the stage's size and speed, once, measured on its first 5 steps
    clock = r"SFT: 30 steps \(batch 4\); [\d.]+ s/step over the first 5: ~\d+ s to go"
    assert len(said) == 1 and re.fullmatch(clock, said[0]), said
    losses = [h["loss"] for h in sft.history if "loss" in h]
    assert len(losses) == 30 and all(loss > 0 for loss in losses)
    assert sft.hash_before != sft.hash_after
    dpo = fit_dpo(world["base"], world["sets"].dpo, cfg, world["student"], sft.adapter_dir)
    assert dpo.hash_after != sft.hash_after  # DPO moved the SFT adapter
    assert any("rewards/margins" in h for h in dpo.history)
    assert dpo.eval_metrics["rewards/accuracies"] > 0.5  # on its own training pairs, vs the frozen SFT reference
    # a finished stage is reused, not retrained
    assert fit_sft(world["base"], world["sets"].sft, cfg, world["student"]).reused

    prompts = prompts_for_test_split(world["table"])
    out = generate_base_and_tuned(
        world["base"], dpo.adapter_dir, prompts, world["student"], GenerationSettings(max_new_tokens=24, batch_size=8)
    )
    assert len(out) == len(prompts) == int((world["table"].drop_duplicates("dialogue_id").split == "test").sum())
    assert (out.base_response.str.strip() != "").all() and (out.tuned_response.str.strip() != "").all()


def test_resume_from_checkpoint_continues_the_step_count(world):
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                raise RuntimeError("simulated crash at step 5")

    cfg = TrainingConfig(output_dir=str(world["root"] / "resume"), sft=stage(8, save_steps=4))
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit_sft(world["base"], world["sets"].sft, cfg, world["student"], extra_callbacks=[Crash()])
    said = []
    result = fit_sft(world["base"], world["sets"].sft, cfg, world["student"], announce=said.append)
    assert result.resumed_from_step == 4
    assert len(said) == 1 and "SFT: 8 steps (batch" in said[0] and "resumed at step 4); " in said[0]
    assert "over the first 4: " in said[0]  # min(5, the 4 steps left)
    assert result.global_step == 8
    assert [h["step"] for h in result.history if "loss" in h] == [5, 6, 7, 8]


def test_every_logged_step_reaches_mlflow_even_from_a_stage_that_crashed(world, tmp_path):
    # values are written in batches (every 15 s and at the end); a crash must not lose the batch in hand
    import mlflow
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                raise RuntimeError("simulated crash at step 5")

    cfg = TrainingConfig(output_dir=str(tmp_path / "out"), sft=stage(8, save_steps=4))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        mlflow.set_experiment("crash")
        with mlflow.start_run() as run:
            with pytest.raises(RuntimeError, match="simulated crash"):
                fit_sft(world["base"], world["sets"].sft, cfg, world["student"], extra_callbacks=[Crash()])
            crashed = [m.step for m in mlflow.MlflowClient().get_metric_history(run.info.run_id, "sft.loss")]
            fit_sft(world["base"], world["sets"].sft, cfg, world["student"])
        steps = [m.step for m in mlflow.MlflowClient().get_metric_history(run.info.run_id, "sft.loss")]
    finally:
        mlflow.set_tracking_uri(None)
    assert sorted(crashed) == [1, 2, 3, 4]  # logged before the crash, written when it happened
    assert sorted(steps) == [1, 2, 3, 4, 5, 6, 7, 8]  # the resumed run adds the rest, nothing twice


def test_a_stage_that_changes_nothing_fails_loudly(world):
    from transformers import TrainerCallback

    class ZeroLearningRate(TrainerCallback):  # e.g. a broken schedule: steps run, no weight moves
        def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
            for group in optimizer.param_groups:
                group["lr"] = 0.0

    cfg = TrainingConfig(output_dir=str(world["root"] / "frozen"), sft=stage(2))
    with pytest.raises(AdapterUnchanged, match="SFT: training changed no adapter weight"):
        fit_sft(world["base"], world["sets"].sft, cfg, world["student"], extra_callbacks=[ZeroLearningRate()])


def test_adapter_materializer_round_trip(world, tmp_path):
    from empathy_distill.training.adapter import Adapter, folder_hash
    from materializers.adapter_folder import AdapterFolderMaterializer

    cfg = TrainingConfig(output_dir=str(world["root"] / "runs"), sft=stage(30, lr=5e-3), dpo=stage(12))
    sft = fit_sft(world["base"], world["sets"].sft, cfg, world["student"])
    adapter = Adapter(
        path=sft.adapter_dir,
        base_model=world["base"],
        stage="sft",
        weights_hash=sft.hash_after,
        global_step=30,
        rows=len(world["sets"].sft),
    )
    materializer = AdapterFolderMaterializer(str(tmp_path / "artifact"))
    materializer.save(adapter)
    loaded = materializer.load(Adapter)
    assert loaded.model_dump(exclude={"path"}) == adapter.model_dump(exclude={"path"})
    assert folder_hash(loaded.path) == folder_hash(adapter.path)
    assert materializer.extract_metadata(adapter)["weights_hash"] == sft.hash_after


def test_sft_labels_mask_the_prompt(world, tmp_path):
    """Loss only on the assistant turn: every prompt token's label is -100, the reply's tokens are kept."""
    from empathy_distill.training.sft import build_sft_trainer

    rows = world["sets"].sft.head(4)
    cfg = TrainingConfig(output_dir=str(tmp_path), sft=StageSettings(batch_size=4, max_steps=1))
    trainer, _, tokenizer = build_sft_trainer(world["base"], rows, cfg, world["student"], tmp_path / "ckpt")
    batch = next(iter(trainer.get_train_dataloader()))
    replies = {r.strip() for r in rows["response"]}
    learnt_replies = set()
    for ids, labels in zip(batch["input_ids"], batch["labels"]):
        kept = labels != -100
        assert 0 < int(kept.sum()) < int((ids != tokenizer.pad_token_id).sum())  # some tokens are masked, not all
        learnt = tokenizer.decode(ids[kept], skip_special_tokens=False)
        prompt = tokenizer.decode(ids[~kept], skip_special_tokens=False)
        assert "<|user|>" not in learnt and "<|system|>" not in learnt  # no prompt token carries a label
        assert "<|user|>" in prompt
        reply = tokenizer.decode(ids[kept], skip_special_tokens=True).strip()
        assert reply in replies, reply  # what is learnt is exactly one reply (and its end-of-turn token)
        learnt_replies.add(reply)
    assert len(learnt_replies) == len(replies)


def test_length_grouped_sft_batches_pad_less_and_learn_the_same_tokens(world, tmp_path):
    """training.group_by_length: one epoch's batches hold fewer pad tokens than random ones, and every row is
    seen once with the very same labelled tokens (grouping reorders rows, it never changes a mask)."""
    from empathy_distill.training.sft import build_sft_trainer

    rows = world["sets"].sft
    seen = {}
    for grouped in (False, True):
        cfg = TrainingConfig(
            output_dir=str(tmp_path), sft=StageSettings(batch_size=4, epochs=1), group_by_length=grouped
        )
        trainer, _, tokenizer = build_sft_trainer(world["base"], rows, cfg, world["student"], tmp_path / f"c{grouped}")
        pads = total = 0
        learnt = []
        for batch in trainer.get_train_dataloader():
            mask = batch["attention_mask"].bool()
            pads += int((~mask).sum())
            total += mask.numel()
            learnt += [tuple(ids[labels != -100].tolist()) for ids, labels in zip(batch["input_ids"], batch["labels"])]
        seen[grouped] = (pads / total, sorted(learnt))
    assert len(seen[True][1]) == len(rows)
    assert seen[True][1] == seen[False][1]
    assert seen[True][0] < seen[False][0] / 2, seen  # measured on the sample: see docs/performance.md


def test_dpo_reference_is_the_frozen_sft_adapter(world, tmp_path):
    """The reference log-probabilities are the SFT adapter's (a frozen copy named ref), not the base model's."""
    import torch
    from peft import PeftModel
    from trl.trainer.utils import use_adapter

    from empathy_distill.training.dpo import build_dpo_trainer
    from empathy_distill.training.student import load_student

    # float32: the log-probs are compared with a float32 forward pass to 1e-3 (bf16 autocast moves them by ~0.1)
    cfg = TrainingConfig(output_dir=str(tmp_path), sft=stage(8, lr=5e-3), dpo=stage(1), precision="float32")
    sft = fit_sft(world["base"], world["sets"].sft, cfg, world["student"])
    trainer, _, _, _ = build_dpo_trainer(
        world["base"], world["sets"].dpo.head(4), cfg, world["student"], sft.adapter_dir, tmp_path / "dpo"
    )
    model = trainer.model
    assert "ref" in model.peft_config
    ref_params = [p for n, p in model.named_parameters() if ".ref." in n]
    assert ref_params and not any(p.requires_grad for p in ref_params)
    batch = next(iter(trainer.get_train_dataloader()))

    def completion_logps(net) -> torch.Tensor:
        with torch.no_grad():
            logits = net(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        tokens, mask = batch["input_ids"][:, 1:], batch["completion_mask"][:, 1:]
        return (torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1) * mask).sum(1)

    model.eval()
    chosen, rejected = trainer.compute_ref_log_probs(model, batch)
    from_trainer = torch.cat([chosen, rejected]).float()
    with use_adapter(model, adapter_name="ref"):
        ref = completion_logps(model)
    _, base, _ = load_student(world["base"], world["student"])
    base_logps = completion_logps(base.eval())
    _, fresh, _ = load_student(world["base"], world["student"])
    sft_logps = completion_logps(PeftModel.from_pretrained(fresh, sft.adapter_dir).eval())
    assert torch.allclose(from_trainer, ref, atol=1e-3)
    assert torch.allclose(ref, sft_logps, atol=1e-3)
    assert not torch.allclose(ref, base_logps, atol=1e-2)  # the SFT adapter moved these log-probs away from the base


def test_batched_greedy_generation_equals_one_at_a_time(world):
    """Left padding with the attention mask: a prompt's reply does not depend on its batch-mates."""
    from peft import PeftModel

    from empathy_distill.training.generate import generate
    from empathy_distill.training.student import load_student

    cfg = TrainingConfig(output_dir=str(world["root"] / "runs"), sft=stage(30, lr=5e-3), dpo=stage(12))
    sft = fit_sft(world["base"], world["sets"].sft, cfg, world["student"])
    tokenizer, model, _ = load_student(world["base"], world["student"])
    model = PeftModel.from_pretrained(model, sft.adapter_dir)
    prompts = prompts_for_test_split(world["table"])
    chats = [
        [{"role": "system", "content": s}, {"role": "user", "content": u}]
        for s, u in zip(prompts["system"], prompts["user"])
    ]
    lengths = {
        len(
            tokenizer(
                tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False), add_special_tokens=False
            )["input_ids"]
        )
        for c in chats
    }
    assert len(lengths) > 1  # prompts of different lengths, so batches really are padded
    batched = generate(model, tokenizer, chats, GenerationSettings(max_new_tokens=24, batch_size=8))
    single = generate(model, tokenizer, chats, GenerationSettings(max_new_tokens=24, batch_size=1))
    assert batched == single
    assert len(set(single)) > 1


def test_two_processes_train_inside_the_step_like_one_with_the_same_global_batch(world):
    """torchrun from inside the stage (gloo on CPU): SFT and DPO finish, one adapter, the same steps, the same loss
    level."""
    from statistics import mean

    from empathy_distill.training.launch import train_stage

    def run(folder: str, processes: int, per_device: int):
        settings = StageSettings(learning_rate=5e-3, epochs=1, batch_size=per_device, save_steps=1000)
        cfg = TrainingConfig(
            output_dir=str(world["root"] / folder),
            sft=settings,
            dpo=settings.model_copy(update={"learning_rate": 1e-3}),
            num_processes=processes,
        )
        sft = train_stage("sft", world["base"], world["sets"].sft, cfg, world["student"])
        dpo = train_stage("dpo", world["base"], world["sets"].dpo, cfg, world["student"], sft.adapter_dir)
        return cfg, sft, dpo

    _, one_sft, one_dpo = run("single", 1, 4)
    cfg, two_sft, two_dpo = run("ddp", 2, 2)  # 2 processes x 2 = the same global batch of 4
    assert (one_sft.processes, one_dpo.processes, two_sft.processes, two_dpo.processes) == (1, 1, 2, 2)
    assert two_sft.global_step == one_sft.global_step == -(-len(world["sets"].sft) // 4)
    assert two_dpo.global_step == one_dpo.global_step
    adapters = sorted(
        p.parent.name for p in (world["root"] / "ddp").rglob("adapter_model.safetensors") if "checkpoint" not in str(p)
    )
    assert (
        adapters == ["adapter", "adapter"] and len({two_sft.adapter_dir, two_dpo.adapter_dir}) == 2
    )  # one per stage, saved once
    assert two_sft.hash_after != two_sft.hash_before and two_dpo.eval_metrics["rewards/accuracies"] > 0.5
    one_loss = mean(h["loss"] for h in one_sft.history if "loss" in h)
    two_loss = mean(h["loss"] for h in two_sft.history if "loss" in h)
    print(
        f"SFT mean loss: 1 process {one_loss:.3f}, 2 processes {two_loss:.3f}; steps {one_sft.global_step} / "
        f"{two_sft.global_step}"
    )
    assert abs(one_loss - two_loss) / one_loss < 0.1
