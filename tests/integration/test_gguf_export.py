"""GGUF export of a registered version on the real SmolLM2 base: the adapter merged, written as F16 and Q8_0 with
the base file's metadata, read back with transformers' GGUF loader, and logged to the version.

The version's adapter is random (non-zero), so a wrong merge, a tensor under the wrong name or
query/key rows left in HF's rope layout all change the replies read back.
"""

from __future__ import annotations

from pathlib import Path

from empathy_distill.config import GenerationSettings, StudentConfig
from empathy_distill.training.generate import generate
from empathy_distill.training.student import load_student
from tests.real_models import SYSTEM, mlflow_store, register_base

PRESET = "smollm2-135m-instruct"
ASKED = [
    "My dog died yesterday and I can't stop crying.",
    "I finally passed my driving test!",
    "My best friend is moving to another country next month.",
    "I got laid off this morning.",
    "My little brother won his first chess tournament.",
    "I have a job interview tomorrow and I'm so nervous.",
    "Nobody remembered my birthday.",
    "We adopted a kitten last week.",
    "My grandfather is in the hospital again.",
    "I failed my exam even though I studied for weeks.",
    "My sister is getting married in June.",
    "I broke my arm playing football.",
    "Our team won the project award at work.",
    "I feel lonely since I moved to the city.",
    "My car broke down on the highway.",
    "I finished my first marathon!",
    "My parents are getting divorced.",
    "I lost my wallet on the train.",
    "My daughter took her first steps today.",
    "I can't sleep because of the noise next door.",
]
CHATS = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": u}] for u in ASKED]
SETTINGS = GenerationSettings(max_new_tokens=24, batch_size=20)


def isolate_registry(monkeypatch, uri: str) -> None:
    """The store at ``uri`` for this test's in-process commands; the process's tracking and registry URIs (a version
    download sets the global registry URI and MLFLOW_REGISTRY_URI) are restored after it."""
    import mlflow
    import mlflow.tracking._model_registry.utils as registry_utils

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    monkeypatch.setattr(registry_utils, "_registry_uri", None)
    mlflow.set_registry_uri(uri)


def random_adapter(model, folder):
    """A LoRA adapter with non-zero weights (small, so replies stay fluent), saved to ``folder``."""
    import torch
    from peft import get_peft_model

    from empathy_distill.config import LoraSettings
    from empathy_distill.training.arguments import lora_config

    peft = get_peft_model(model, lora_config(LoraSettings()))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)
    peft.save_pretrained(folder)
    peft.unload()
    return folder


def test_a_version_exported_as_gguf_reads_back_as_its_merged_model(real_folder, tmp_path, monkeypatch, capsys):
    import mlflow
    import torch
    from peft import PeftModel

    from app.cli import main
    from empathy_distill.training import sources
    from empathy_distill.training.chat import resolve_chat_format

    folder, info = real_folder(PRESET)
    tokenizer, model, fmt = load_student(folder, StudentConfig(model=folder, dtype="float32"))  # its own copy
    with mlflow_store(tmp_path):
        uri = mlflow.get_tracking_uri()
        version = register_base(folder, tmp_path, model, "exported", adapter=random_adapter(model, tmp_path / "lora"))
    isolate_registry(monkeypatch, uri)
    monkeypatch.chdir(tmp_path)
    code = main(["deploy", "gguf", "--model", "models:/exported/1", "--out", str(tmp_path / "dist")])
    printed = capsys.readouterr().out
    print(printed)
    assert code == 0
    base_replies = [r.text for r in generate(model, tokenizer, CHATS, SETTINGS, fmt=fmt, progress=False)]
    merged = PeftModel.from_pretrained(model, str(tmp_path / "lora")).merge_and_unload().eval()
    out = tmp_path / "dist" / "exported-v1"
    files = {kind: out / f"exported-v1-{kind}.gguf" for kind in ("f16", "q8_0")}
    print(
        {k: f.stat().st_size for k, f in files.items()},
        "the base's Q4_1 file:",
        Path(info["gguf"]["path"]).stat().st_size,
    )

    # F16 read back = the merged model with its 2-D weights rounded to float16, reply for reply
    rounded = load_student(folder, StudentConfig(model=folder, dtype="float32"))[1]
    rounded.load_state_dict(merged.state_dict(), strict=False)
    with torch.no_grad():
        for param in rounded.parameters():
            if param.ndim == 2:
                param.copy_(param.half().float())
    expected = [r.text for r in generate(rounded, tokenizer, CHATS, SETTINGS, fmt=fmt, progress=False)]
    back = {}
    for kind, path in files.items():
        again, _ = sources.resolve_student(str(path), tmp_path / "students")
        back[kind] = load_student(again, StudentConfig(model=again, dtype="float32"))
    tok16, model16, fmt16 = back["f16"]
    assert fmt16.stop_ids == fmt.stop_ids and fmt16.template == fmt.template  # chat template and stops carried
    assert tok16.eos_token == tokenizer.eos_token == "<|im_end|>"
    replies16 = [r.text for r in generate(model16, tok16, CHATS, SETTINGS, fmt=fmt16, progress=False)]
    assert replies16 == expected

    # logits against the float32 merged model: F16 and Q8_0 within their precision
    ids = tokenizer([CHATS[0][1]["content"], CHATS[1][1]["content"]], return_tensors="pt", padding=True)
    real = ids["attention_mask"].bool()  # padded positions' logits mean nothing
    with torch.no_grad():
        reference = merged(**ids).logits[real]
        gaps = {kind: (back[kind][1](**ids).logits[real] - reference).abs().max().item() for kind in files}
    scale = reference.abs().max().item()
    print(f"max |logit difference| vs the float32 merged model (logits up to {scale:.1f}): {gaps}")
    assert gaps["f16"] < 0.01 * scale and gaps["q8_0"] < 0.1 * scale  # measured: 0.1% and 2.7% of the largest
    replies8 = [r.text for r in generate(back["q8_0"][1], back["q8_0"][0], CHATS, SETTINGS, fmt=fmt, progress=False)]
    same8 = sum(a == b for a, b in zip(replies8, expected))
    print(f"Q8_0 greedy replies equal to the F16-rounded merged model's: {same8}/20")
    assert base_replies != expected  # the adapter mattered: the base alone answers otherwise

    # logged to the version, with an Ollama Modelfile
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    tags = client.get_model_version("exported", "1").tags
    for kind, path in files.items():
        assert tags[f"gguf.{kind}.sha256"] == sources.sha256_file(str(path))
    logged = {a.path for a in client.list_artifacts(version.run_id, "gguf")}
    assert logged == {"gguf/Modelfile", "gguf/exported-v1-f16.gguf", "gguf/exported-v1-q8_0.gguf"}
    recipe = (out / "Modelfile").read_text()
    assert recipe.startswith("FROM ./exported-v1-f16.gguf") and 'PARAMETER stop "<|im_end|>"' in recipe
    assert f'SYSTEM """{SYSTEM}"""' in recipe and "PARAMETER num_predict 24" in recipe
    assert resolve_chat_format(tok16).end_of_turn == "<|im_end|>"


def test_a_base_that_is_not_a_gguf_file_is_one_line(tmp_path, monkeypatch, capsys):

    from app.cli import main
    from tests.tiny_model import register_tiny_versions

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    register_tiny_versions(tmp_path, uri, "tiny")  # its set_tracking_uri(None) also clears MLFLOW_TRACKING_URI
    isolate_registry(monkeypatch, uri)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()  # the set-up's own output (MLflow creating its tables, its download bars): not the command's
    assert main(["deploy", "gguf", "--model", "models:/tiny/1", "--out", str(tmp_path / "dist")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: tiny v1's base is ") and "not a GGUF file" in err[0]
    assert main(["deploy", "gguf", "--model", "models:/tiny/1", "--kinds", "q4_0"]) == 2
    assert "--kinds: unknown q4_0; known: f16, q8_0" in capsys.readouterr().err
