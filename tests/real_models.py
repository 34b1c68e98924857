"""Real pretrained students from PyPI in tests: a throw-away MLflow store, and a registered version of a real base
whose adapter is all zeros (it answers as the base itself). The session fixtures that dequantise and load each
model once (``real_folder``, ``loaded``) are in ``tests/conftest.py``."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from empathy_distill.training import sources

SYSTEM = "You are a caring listener. Reply in one or two warm sentences."
CHATS = [
    [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "My dog died yesterday and I can't stop crying."},
    ],
    [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "I finally passed my driving test!"}],
]
REPLIES = ["I am so sorry. Losing a dog is losing family.", "Congratulations, that is a big step!"]


def need(preset: str) -> None:
    """Skips the test, with what to install, when the preset's package is absent."""
    package = sources.PRESETS[preset].package
    if sources.installed_version(package) is None:
        pytest.skip(f"{package} is not installed ({sources.PRESETS[preset].install}; make install does it)")


@contextlib.contextmanager
def mlflow_store(tmp_path: Path, experiment: str = "real-students"):
    """A throw-away MLflow store for the block; the process's tracking URI and active experiment are reset after
    (a leftover experiment id, in the module or in MLFLOW_EXPERIMENT_ID, breaks the next test's fresh store)."""
    import mlflow
    import mlflow.tracking.fluent as fluent

    saved = {k: os.environ.get(k) for k in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")  # a download may have left it elsewhere
    mlflow.set_experiment(experiment)  # also sets MLFLOW_EXPERIMENT_ID in the environment
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        fluent._active_experiment_id = None
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def served_replies(folder: str, tmp_path: Path, tokenizer, model, fmt) -> list[str]:
    """The replies of a registered version whose adapter is all zeros (the base itself), through MLflow's pyfunc
    (into the active MLflow store)."""
    import mlflow
    import pandas as pd

    info = register_base(folder, tmp_path, model, "real-student")
    served = mlflow.pyfunc.load_model(info.model_uri)
    out = served.predict(pd.DataFrame({"messages": CHATS}))
    return list(out["response"])


def register_base(folder: str, tmp_path: Path, model, name: str, max_new_tokens: int = 24, adapter: Path | None = None):
    """A new version of ``name`` in the active MLflow store: the base at ``folder`` with an all-zero LoRA adapter (or
    the one at ``adapter``) (greedy, ``max_new_tokens``, the system prompt ``SYSTEM``); MLflow's ``ModelInfo``."""
    import mlflow
    from peft import get_peft_model

    from empathy_distill.config import LoraSettings
    from empathy_distill.registry.pyfunc import bundle_base, log_student_model
    from empathy_distill.training.arguments import lora_config

    if adapter is None:
        peft = get_peft_model(model, lora_config(LoraSettings()))  # LoRA B starts at zero: replies equal the base's
        adapter = tmp_path / "adapter"
        peft.save_pretrained(adapter)
        peft.unload()
    with mlflow.start_run():
        assert not bundle_base(folder, 4096)  # a GGUF base is recorded, never copied
        info = log_student_model(
            str(adapter),
            folder,
            bundle_base=False,
            chat_template=None,
            dtype="float32",
            generation={"max_new_tokens": max_new_tokens, "temperature": 0.0, "top_p": 1.0, "no_repeat_ngram_size": 0},
            system_prompt=SYSTEM,
            model_name=name,
        )
    return info
