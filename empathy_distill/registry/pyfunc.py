"""The registered model: an MLflow pyfunc that answers chats with the base student plus its LoRA adapter.

The adapter folder is an artifact of the model. A base dequantised from a GGUF file (a packaged
SmolLM2 or Gemma-3, or a ``.gguf`` path) is never copied: the version records the file (package and
version, name, sha256, the conversion's versions), re-hashes it at load, and rebuilds the
dequantised folder from it when the cache was deleted. A base that is a local folder (the offline
``tiny`` student, or any folder up to ``registry.bundle_base_max_mb``) travels inside the
model as a second artifact, so the version loads after the folder is moved or deleted.
Otherwise the base is a reference in ``model_config`` (a hub id or a folder) with its content
fingerprint: a deployment can relocate it at load or serve time
(``mlflow.pyfunc.load_model(uri, model_config={"base_model": ...})``, ``SERVING_MODEL_CONFIG``),
and a folder that is gone or holds another model is refused in one line naming ``base_model``.

Input: one chat per row, ``messages`` = ``[{"role": ..., "content": ...}, ...]``
(a system message is added when absent: the one the student was trained with).
Output: ``response`` and ``finish_reason`` (``stop``: the student ended its turn; ``length``: it ran to
``max_new_tokens``). Params: the generation settings. Malformed chats raise
``MlflowException(INVALID_PARAMETER_VALUE)``, which the model server answers with 400.
"""

from __future__ import annotations

import threading
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import Array, ColSpec, Object, ParamSchema, ParamSpec, Property, Schema

from empathy_distill.config import GenerationSettings, StudentConfig
from empathy_distill.errors import ConfigError
from empathy_distill.serving.api import ApiError
from empathy_distill.serving.api import check_chat as check_turns
from empathy_distill.training.fingerprint import folder_size, is_local_model, model_fingerprint
from empathy_distill.training.generate import generate
from empathy_distill.training.sources import gguf_origin, rebuild_from_record
from empathy_distill.training.student import load_student

MAX_CHARS = 20_000  # a chat longer than this is refused, not truncated silently
MAX_NEW_TOKENS = 1024
MAX_ROWS = 64  # chats per request


def signature(generation: dict[str, Any]) -> mlflow.models.ModelSignature:
    """Chat in, ``response`` out; the generation settings as params whose defaults are the registered ones."""
    g = {"max_new_tokens": 64, "temperature": 0.0, "top_p": 1.0, "no_repeat_ngram_size": 0, **generation}
    return mlflow.models.ModelSignature(
        inputs=Schema(
            [ColSpec(Array(Object([Property("role", "string"), Property("content", "string")])), "messages")]
        ),
        outputs=Schema([ColSpec("string", "response"), ColSpec("string", "finish_reason")]),
        params=ParamSchema(
            [
                ParamSpec("max_new_tokens", "long", int(g["max_new_tokens"])),
                ParamSpec("temperature", "double", float(g["temperature"])),
                ParamSpec("top_p", "double", float(g["top_p"])),
                ParamSpec("no_repeat_ngram_size", "long", int(g["no_repeat_ngram_size"])),
            ]
        ),
    )


def bad_request(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def check_chat(messages: Any, row: int) -> list[dict[str, str]]:
    """A list of ``{role, content}`` with known roles, non-empty text and a user turn last; else a 400."""

    if hasattr(messages, "tolist"):
        messages = messages.tolist()
    try:
        chat = check_turns(messages, where=f"row {row}: messages")
    except ApiError as exc:
        raise bad_request(str(exc)) from None
    if sum(len(m["content"]) for m in chat) > MAX_CHARS:
        raise bad_request(f"row {row}: the chat is longer than {MAX_CHARS} characters")
    return chat


def base_path(cfg: dict[str, Any], artifacts: dict[str, str]) -> str:
    """The folder (or hub id) of the version's base: its bundled copy, the dequantised folder of its GGUF file
    (re-hashed, and rebuilt when the cache is gone), or the checked reference."""
    if cfg.get("base_source") == "artifact" and "base" in artifacts:
        return artifacts["base"]
    if cfg.get("base_source") == "gguf":
        cache_dir = cfg.get("student_cache_dir") or str(Path(str(cfg["base_model"])).parent)
        try:
            return str(rebuild_from_record(cfg["base_gguf"], cache_dir))
        except ConfigError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
    base = str(cfg["base_model"])
    check_base_reference(base, cfg.get("base_fingerprint"))
    return base


def generation_defaults(cfg: dict[str, Any]) -> dict[str, Any]:
    """The registered generation settings (what a request that names none gets)."""
    return {k: cfg[k] for k in ("max_new_tokens", "temperature", "top_p", "no_repeat_ngram_size") if k in cfg}


class StudentChatModel(mlflow.pyfunc.PythonModel):
    """Base student + LoRA adapter, loaded once; generation serialized (one model, many server threads)."""

    def load_context(self, context) -> None:
        from peft import PeftModel

        cfg = dict(context.model_config or {})
        base = base_path(cfg, context.artifacts)
        student = StudentConfig(model=str(base), chat_template=cfg.get("chat_template"), dtype=cfg.get("dtype", "auto"))
        self.tokenizer, model, self.chat_format = load_student(str(base), student)
        import torch

        if torch.cuda.is_available():
            model = model.to("cuda")
        self.model = PeftModel.from_pretrained(model, context.artifacts["adapter"])
        self.system_prompt = cfg.get("system_prompt", "")
        self.defaults = generation_defaults(cfg)
        self._lock = threading.Lock()

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:

        if not isinstance(model_input, pd.DataFrame) or "messages" not in model_input.columns:
            raise bad_request("expected one chat per row in a 'messages' column")
        if len(model_input) > MAX_ROWS:
            raise bad_request(f"{len(model_input)} chats in one request; at most {MAX_ROWS}")
        chats = []
        for row, messages in enumerate(model_input["messages"]):
            chat = check_chat(messages, row)
            if chat[0]["role"] != "system" and self.system_prompt:
                chat = [{"role": "system", "content": self.system_prompt}, *chat]
            chats.append(chat)
        try:
            settings = GenerationSettings(
                **{**self.defaults, **{k: v for k, v in (params or {}).items() if v is not None}},
                batch_size=max(1, len(chats)),
            )
        except ValueError as exc:
            raise bad_request(f"params: {' '.join(str(exc).split())}") from None
        if settings.max_new_tokens > MAX_NEW_TOKENS:
            raise bad_request(f"params: max_new_tokens {settings.max_new_tokens} is above {MAX_NEW_TOKENS}")
        with self._lock:
            replies = generate(self.model, self.tokenizer, chats, settings, desc="serve", fmt=self.chat_format)
        return pd.DataFrame(
            {"response": [r.text for r in replies], "finish_reason": [r.finish_reason for r in replies]}
        )


def check_base_reference(base: str, fingerprint: str | None) -> None:
    """Refuses, in one line, a referenced local base that is gone or is not the model the adapter was trained on."""

    fix = (
        'point base_model at the registered base (SERVING_MODEL_CONFIG=\'{"base_model": "<folder>"}\' for the '
        "model server, or model_config={'base_model': ...} in mlflow.pyfunc.load_model)"
    )
    local = base.startswith(("/", ".", "~")) or is_local_model(base)
    if local and not is_local_model(base):
        raise MlflowException(f"base model folder '{base}' not found: {fix}", error_code=INVALID_PARAMETER_VALUE)
    if local and fingerprint and (found := model_fingerprint(base)) != fingerprint:
        raise MlflowException(
            f"base model folder '{base}' is not the registered base (fingerprint {found[:19]}, registered "
            f"{fingerprint[:19]}): {fix}",
            error_code=INVALID_PARAMETER_VALUE,
        )


def pinned_requirements() -> list[str]:
    """The serving environment: exact versions of what this process runs (no torchvision, no extras)."""
    out = []
    for name in ("mlflow", "torch", "transformers", "peft", "tokenizers", "pandas", "pydantic", "safetensors"):
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return out


def bundle_base(base_model: str, max_mb: int) -> bool:
    """A local base folder up to ``max_mb`` travels inside the registered model; a hub id or a larger folder is a
    fingerprinted reference."""

    if gguf_origin(base_model) is not None:  # recorded by its GGUF file, rebuilt at load: never copied
        return False
    return is_local_model(base_model) and folder_size(base_model) <= max_mb * 1024 * 1024


def log_student_model(
    adapter_dir: str,
    base_model: str,
    *,
    bundle_base: bool,
    chat_template: str | None,
    dtype: str,
    generation: dict[str, Any],
    system_prompt: str,
    model_name: str,
    tags: dict[str, str] | None = None,
):
    """Logs the pyfunc model into the active run and registers a new version of ``model_name``.

    Returns MLflow's ``ModelInfo`` (``registered_model_version``, ``model_id``, ``model_uri``).
    """

    artifacts = {"adapter": adapter_dir}
    if bundle_base:
        artifacts["base"] = base_model
    origin = gguf_origin(base_model)
    model_config = {
        "base_model": base_model,
        "base_source": "artifact" if bundle_base else "gguf" if origin else "reference",
        "base_fingerprint": f"gguf-sha256:{origin['sha256']}" if origin else model_fingerprint(base_model),
        **({"base_gguf": origin} if origin else {}),
        "chat_template": chat_template,
        "dtype": dtype,
        "system_prompt": system_prompt,
        **generation,
    }
    import contextlib
    import io
    import sys
    import warnings

    # MLflow prints "Successfully registered model" and "Created version" to stderr; the register step prints
    # its own line with the version, so those two go, and anything else MLflow writes passes through
    said = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stderr(said):
        # MLflow asks for an input example, which it would run through the model (loading the base and the
        # adapter) at logging time; the signature is explicit and the serving tests send real chats instead
        warnings.filterwarnings("ignore", message=".*An input example was not provided")  # MLflow colours the text
        info = mlflow.pyfunc.log_model(
            name="student",
            python_model=str(Path(__file__).with_name("model_code.py")),  # code, not a pickle: loads with the package
            artifacts=artifacts,
            model_config=model_config,
            signature=signature(generation),
            pip_requirements=pinned_requirements(),
            registered_model_name=model_name,
            tags=tags,
            await_registration_for=0,
        )
    routine = ("Successfully registered model", "Created version")
    sys.stderr.writelines(line for line in said.getvalue().splitlines(keepends=True) if not line.startswith(routine))
    return info
