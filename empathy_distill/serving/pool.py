"""Registered versions held in memory, one base per distinct base model with each version as a PEFT adapter on it.

Versions whose base is the same model (same content fingerprint, dtype and chat template: every
version trained from one student) share one loaded base; each is an adapter named ``v<N>`` on
it (PEFT holds several adapters on one base). A base has one decoding loop
(:mod:`empathy_distill.serving.engine`): a chat joins the running batch at its next step and
leaves when it ends, whatever version it asked for (rows of one batch may use different
adapters). Token limits are checked there, with the version's own tokenizer and chat template:
the prompt is counted after the template, and a chat that leaves no room for ``max_tokens`` in
the context is refused with a 400 naming the numbers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from empathy_distill.config import StudentConfig
from empathy_distill.serving.api import ApiError
from empathy_distill.serving.engine import Engine, Listener, Request
from empathy_distill.training.student import load_student

logger = logging.getLogger(__name__)

WARM_CHAT = [{"role": "user", "content": "Hello."}]
ORIGIN_FILE = "ORIGIN"
REGISTRY_ENV = "MLFLOW_REGISTRY_URI"
"""Beside a downloaded version's MLmodel: which store, run and source it came from."""


@dataclass
class Base:
    """One loaded base model (a ``PeftModel`` holding the adapters of every version on it) and its worker."""

    key: tuple[str, str, str]
    model: Any
    engine: Engine
    """Its decoding loop (continuous batching over every adapter on it)."""
    lock: threading.Lock
    """Held by each decoding step; taken to load or drop an adapter."""
    adapters: set[str] = field(default_factory=set)


@dataclass
class Version:
    """A registered version ready to answer."""

    number: str
    adapter: str | None
    """None: the base alone (``serve --base``)."""
    base: Base
    system_prompt: str
    defaults: dict[str, Any]
    loaded_seconds: float
    in_flight: int = 0
    last_used: float = field(default_factory=time.monotonic)


class Pool:
    """The versions of one registered model that a server holds, loaded on first use.

    Args:
        model_name: the registered model.
        tracking_uri: the MLflow store whose registry holds it.
        cache_dir: where version folders are downloaded.
        max_loaded: versions kept in memory; beyond it the least recently used one that no route names and no
            request uses is unloaded.
        max_batch: chats generated together at most.
        dtype: the served weights' precision; ``version``: each version's registered one; ``int8``: int8 weights
            with bfloat16 activations (through the engine's packed pass).
        merge: a base holding one adapter serves it merged into its weights (``Engine``'s ``merge``).
        decoder: ``Engine``'s ``decoder`` (auto, packed, transformers).
    """

    def __init__(
        self,
        model_name: str,
        tracking_uri: str,
        cache_dir: str | Path,
        max_loaded: int = 4,
        max_batch: int = 32,
        dtype: str = "version",
        merge: bool = True,
        decoder: str = "auto",
    ):
        self.model_name = model_name
        self.tracking_uri = tracking_uri
        self.cache_dir = Path(cache_dir)
        self.max_loaded = max_loaded
        self.max_batch = max_batch
        self.dtype = dtype
        self.merge = merge
        self.decoder = decoder
        self.versions: dict[str, Version] = {}
        self.bases: dict[tuple[str, str, str], Base] = {}
        self._loading: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._guard = threading.Lock()

    # loading -----------------------------------------------------------------------------------------------------

    def ensure(self, number: str, keep: set[str] = frozenset()) -> Version:
        """The version, loaded (download, base or adapter, one warm-up reply) when it is not yet.

        Args:
            keep: versions that must stay loaded whatever their last use (those the routes name).

        Raises:
            ApiError: 404 when the registry has no such version.
        """
        number = str(number)
        with self._loading[number]:  # two requests for one new version load it once
            found = self.versions.get(number)
            if found is not None:
                return found
            version = self._load(number)
            with self._guard:
                self.versions[number] = version
            self.evict(keep | {number})
            return version

    def _load(self, number: str) -> Version:
        import mlflow
        from mlflow.exceptions import MlflowException

        # import-time: empathy_distill.registry.pyfunc 2.2 s to import (empathy_distill.serving.pool alone 0.8 s)
        from empathy_distill.registry.pyfunc import base_path, generation_defaults

        start = time.monotonic()
        uri = f"models:/{self.model_name}/{number}"
        client = mlflow.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        try:
            client.get_model_version(self.model_name, number)
        except MlflowException:
            raise ApiError(
                404, f"the registry has no version {number} of {self.model_name}", param="model", code="model_not_found"
            ) from None
        folder = download(self.model_name, number, self.tracking_uri, self.cache_dir)
        cfg, artifacts = read_model(folder)
        if self.dtype != "version":  # int8: the weights go int8 in the engine's pass, the activations bfloat16
            cfg["dtype"] = "bfloat16" if self.dtype == "int8" else self.dtype
        base_dir = base_path(cfg, artifacts)
        key = (
            str(cfg.get("base_fingerprint") or base_dir),
            str(cfg.get("dtype", "auto")),
            str(cfg.get("chat_template")),
        )
        adapter = f"v{number}"
        base = self.bases.get(key)
        if base is None:
            base = self._load_base(key, base_dir, cfg, artifacts["adapter"], adapter)
        else:
            with base.lock:
                base.model.load_adapter(artifacts["adapter"], adapter_name=adapter)
                base.adapters.add(adapter)
        version = Version(
            number=number,
            adapter=adapter,
            base=base,
            system_prompt=cfg.get("system_prompt", ""),
            defaults=generation_defaults(cfg),
            loaded_seconds=0.0,
        )
        self.submit(version, WARM_CHAT, 1, {}).future.result()  # the first real request does not pay for the first pass
        version.loaded_seconds = round(time.monotonic() - start, 2)
        logger.info("loaded %s (adapter %s) in %.1f s", uri, adapter, version.loaded_seconds)
        return version

    def _load_base(self, key, base_dir: str, cfg: dict[str, Any], adapter_dir: str, adapter: str) -> Base:
        import torch
        from peft import PeftModel

        student = StudentConfig(model=base_dir, chat_template=cfg.get("chat_template"), dtype=cfg.get("dtype", "auto"))
        tokenizer, model, fmt = load_student(base_dir, student)
        if torch.cuda.is_available():
            model = model.to("cuda")
        model = PeftModel.from_pretrained(model, adapter_dir, adapter_name=adapter)
        model.eval()
        lock = threading.Lock()
        engine = Engine(
            model,
            tokenizer,
            fmt,
            max_batch=self.max_batch,
            lock=lock,
            name=f"decode-{adapter}",
            merge=self.merge,
            decoder="int8" if self.dtype == "int8" else self.decoder,
        )
        base = Base(key=key, model=model, engine=engine, lock=lock)
        base.adapters.add(adapter)
        with self._guard:
            self.bases[key] = base
        return base

    def evict(self, keep: set[str]) -> list[str]:
        """Unloads the least recently used versions beyond ``max_loaded`` (never one in ``keep`` or in use)."""
        dropped = []
        with self._guard:
            spare = sorted(
                (v for n, v in self.versions.items() if n not in keep and v.in_flight == 0), key=lambda v: v.last_used
            )
            while len(self.versions) > self.max_loaded and spare:
                version = spare.pop(0)
                del self.versions[version.number]
                dropped.append(version)
        for version in dropped:
            self._unload(version)
        return [v.number for v in dropped]

    def _unload(self, version: Version) -> None:
        base = version.base
        with base.lock:
            base.adapters.discard(version.adapter)
            if base.adapters:
                base.model.set_adapter(next(iter(base.adapters)))
                base.model.delete_adapter(version.adapter)
                return
        with self._guard:
            self.bases.pop(base.key, None)
        base.engine.close()  # the loop ends; the base is freed with the last reference
        logger.info("unloaded v%s and its base", version.number)

    # generating --------------------------------------------------------------------------------------------------

    def submit(
        self,
        version: Version,
        chat: list[dict[str, str]],
        max_tokens: int | None,
        settings: dict,
        listener: Listener | None = None,
    ) -> Request:
        """Queues a chat for the version's base; the request's ``future`` holds a ``Reply`` or raises ``ApiError``
        (and its ``listener``, when given, hears the reply's text as it grows)."""
        return submit_chat(version, chat, max_tokens, settings, listener)

    def stats(self) -> dict[str, Any]:
        """Each loaded base's decoding loop: chats running and waiting, steps, prefills, cancels."""
        return {"+".join(sorted(b.adapters)): b.engine.stats() for b in list(self.bases.values())}

    def close(self, wait_s: float = 30.0) -> None:
        """Ends every base's loop, waiting for each to leave its current step (the process may exit next)."""
        for base in list(self.bases.values()):
            base.engine.close()
        for base in list(self.bases.values()):
            base.engine.close(wait_s)


def submit_chat(
    version: Version, chat: list[dict[str, str]], max_tokens: int | None, settings: dict, listener: Listener | None
) -> Request:
    """The chat to the version's engine: its system prompt first when the chat has none, its generation defaults
    under the request's own settings."""
    if chat[0]["role"] != "system" and version.system_prompt:
        chat = [{"role": "system", "content": version.system_prompt}, *chat]
    merged = {**version.defaults, **{k: v for k, v in settings.items() if v is not None}}
    return version.base.engine.submit(chat, max_tokens, merged, adapter=version.adapter, listener=listener)


def download(model_name: str, number: str, tracking_uri: str, cache_dir: str | Path) -> Path:
    """The folder ``cache_dir/<name>-v<N>`` holding the version's model (downloaded once; a half download is never
    taken: it goes to a temporary folder beside, renamed when whole).

    A folder is reused only when it holds this very version: its ``ORIGIN`` file names the store (hashed: a URI may
    hold a password), the run and the source. Another store's v<N> under the same name (a fresh store after the
    old one was deleted, a test's store) is downloaded again, never served in its place.
    """
    import hashlib
    import shutil
    import tempfile

    import mlflow

    cache_dir = Path(cache_dir)
    folder = cache_dir / f"{model_name}-v{number}"
    found = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).get_model_version(
        model_name, str(number)
    )
    origin = json.dumps(
        {
            "store": hashlib.sha256(tracking_uri.encode()).hexdigest()[:16],
            "run_id": found.run_id,
            "source": found.source,
        },
        sort_keys=True,
    )
    marker = folder / ORIGIN_FILE
    if (folder / "MLmodel").exists() and marker.is_file() and marker.read_text() == origin:
        return folder
    uri = f"models:/{model_name}/{number}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    part = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{folder.name}-"))
    with process_registry_uri(tracking_uri):
        mlflow.artifacts.download_artifacts(
            uri, dst_path=str(part), tracking_uri=tracking_uri, registry_uri=tracking_uri
        )
    if not (part / "MLmodel").exists():
        shutil.rmtree(part, ignore_errors=True)
        raise RuntimeError(f"{uri}: the registry's artifacts hold no MLmodel (its artifact store is gone?)")
    (part / ORIGIN_FILE).write_text(origin)
    shutil.rmtree(folder, ignore_errors=True)
    part.rename(folder)
    return folder


@contextlib.contextmanager
def process_registry_uri(uri: str) -> Iterator[None]:
    """Point the process's global registry URI at ``uri`` for the block, then put back what was there.

    ``models:/`` resolves against the global registry URI (MLflow 3's ModelsArtifactRepository looks the version up
    with a default client, whatever ``registry_uri`` ``download_artifacts`` is given), and ``mlflow.set_registry_uri``
    also sets ``MLFLOW_REGISTRY_URI``, which every later client and child process would inherit: left set, a
    pipeline run after a download registered in one store and promoted in another."""
    from mlflow.tracking._model_registry import utils

    saved_global, saved_env = utils._registry_uri, os.environ.get(REGISTRY_ENV)
    utils.set_registry_uri(uri)
    try:
        yield
    finally:
        utils._registry_uri = saved_global
        if saved_env is None:
            os.environ.pop(REGISTRY_ENV, None)
        else:
            os.environ[REGISTRY_ENV] = saved_env


def read_model(folder: str | Path, overrides: bool = True) -> tuple[dict[str, Any], dict[str, str]]:
    """The registered model config (with ``SERVING_MODEL_CONFIG``'s JSON over it unless ``overrides`` is off) and the
    artifact paths of a downloaded version."""
    from mlflow.models import Model

    folder = Path(folder)
    flavor = Model.load(str(folder / "MLmodel")).flavors["python_function"]
    cfg = dict(flavor.get("config", {}))
    if overrides:
        cfg.update(json.loads(os.environ.get("SERVING_MODEL_CONFIG") or "{}"))
    artifacts = {name: str(folder / spec["path"]) for name, spec in flavor.get("artifacts", {}).items()}
    return cfg, artifacts
