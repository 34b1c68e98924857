"""Registered versions held in memory, one base per distinct base model with each version as a PEFT adapter on it.

Versions whose base is the same model (same content fingerprint, dtype and chat template: every
version trained from one student) share one loaded base; each is an adapter named ``v<N>`` on
it (PEFT holds several adapters on one base and switches with ``set_adapter``). A base has one
worker thread that serves its queue: it takes every request waiting, groups them by adapter and
generation settings, and runs each group as one left-padded batch, so 32 concurrent chats cost
a few forward passes instead of 32. Token limits are checked there, with the version's own
tokenizer and chat template: the prompt is counted after the template, and a chat that leaves
no room for ``max_tokens`` in the context is refused with a 400 naming the numbers.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from empathy_distill.serving.api import ApiError

logger = logging.getLogger(__name__)

WARM_CHAT = [{"role": "user", "content": "Hello."}]


@dataclass
class Base:
    """One loaded base model (a ``PeftModel`` holding the adapters of every version on it) and its worker."""

    key: tuple[str, str, str]
    tokenizer: Any
    model: Any
    fmt: Any
    context: int
    """Tokens the model attends to (prompt + reply)."""
    adapters: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    jobs: queue.Queue = field(default_factory=queue.Queue)
    worker: threading.Thread | None = None


@dataclass
class Version:
    """A registered version ready to answer."""

    number: str
    adapter: str
    base: Base
    system_prompt: str
    defaults: dict[str, Any]
    loaded_seconds: float
    in_flight: int = 0
    last_used: float = field(default_factory=time.monotonic)


@dataclass
class Job:
    version: Version
    chat: list[dict[str, str]]
    max_tokens: int | None
    """None: the registered default, cut to what the context leaves."""
    settings: dict[str, Any]
    future: Future = field(default_factory=Future)


class Pool:
    """The versions of one registered model that a server holds, loaded on first use.

    Args:
        model_name: the registered model.
        tracking_uri: the MLflow store whose registry holds it.
        cache_dir: where version folders are downloaded.
        max_loaded: versions kept in memory; beyond it the least recently used one that no route names and no
            request uses is unloaded.
        max_batch: chats generated together at most.
    """

    def __init__(
        self, model_name: str, tracking_uri: str, cache_dir: str | Path, max_loaded: int = 4, max_batch: int = 32
    ):
        self.model_name = model_name
        self.tracking_uri = tracking_uri
        self.cache_dir = Path(cache_dir)
        self.max_loaded = max_loaded
        self.max_batch = max_batch
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
        self.submit(version, WARM_CHAT, 1, {}).result()  # the first real request does not pay for the first pass
        version.loaded_seconds = round(time.monotonic() - start, 2)
        logger.info("loaded %s (adapter %s) in %.1f s", uri, adapter, version.loaded_seconds)
        return version

    def _load_base(self, key, base_dir: str, cfg: dict[str, Any], adapter_dir: str, adapter: str) -> Base:
        import torch
        from peft import PeftModel

        from empathy_distill.config import StudentConfig
        from empathy_distill.training.student import load_student

        student = StudentConfig(model=base_dir, chat_template=cfg.get("chat_template"), dtype=cfg.get("dtype", "auto"))
        tokenizer, model, fmt = load_student(base_dir, student)
        if torch.cuda.is_available():
            model = model.to("cuda")
        model = PeftModel.from_pretrained(model, adapter_dir, adapter_name=adapter)
        model.eval()
        base = Base(key=key, tokenizer=tokenizer, model=model, fmt=fmt, context=context_length(model, tokenizer))
        base.adapters.add(adapter)
        base.worker = threading.Thread(target=self._work, args=(base,), name=f"generate-{adapter}", daemon=True)
        base.worker.start()
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
        base.jobs.put(None)  # the worker ends; the base is freed with the last reference
        logger.info("unloaded v%s and its base", version.number)

    # generating --------------------------------------------------------------------------------------------------

    def submit(self, version: Version, chat: list[dict[str, str]], max_tokens: int | None, settings: dict) -> Future:
        """Queues a chat for the version's base; the future holds a ``Reply`` or raises ``ApiError``."""
        if chat[0]["role"] != "system" and version.system_prompt:
            chat = [{"role": "system", "content": version.system_prompt}, *chat]
        job = Job(
            version, chat, max_tokens, {**version.defaults, **{k: v for k, v in settings.items() if v is not None}}
        )
        version.base.jobs.put(job)
        return job.future

    def _work(self, base: Base) -> None:
        while True:
            job = base.jobs.get()
            if job is None:
                return
            jobs = [job]
            while len(jobs) < self.max_batch:
                try:
                    more = base.jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    base.jobs.put(None)  # end after this batch
                    break
                jobs.append(more)
            try:
                self._run(base, jobs)
            except Exception as exc:  # noqa: BLE001 (the worker must outlive any batch: a dead one hangs every request)
                logger.exception("a batch of %d chats failed", len(jobs))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(server_error(f"generation failed: {type(exc).__name__}"))

    def _run(self, base: Base, jobs: list[Job]) -> None:
        from empathy_distill.config import GenerationSettings
        from empathy_distill.training.generate import generate

        groups: dict[tuple, list[tuple[Job, int]]] = defaultdict(list)
        with base.lock:
            for job in jobs:
                if not job.future.set_running_or_notify_cancel():
                    continue
                try:
                    prompt = len(base.fmt.prompt_ids(base.tokenizer, job.chat))
                    max_new = fit(prompt, job.max_tokens, job.settings.get("max_new_tokens", 64), base.context)
                    settings = GenerationSettings(**{**job.settings, "max_new_tokens": max_new})
                except ApiError as exc:
                    job.future.set_exception(exc)
                    continue
                except ValueError as exc:  # a setting the generation config refuses
                    job.future.set_exception(ApiError(400, " ".join(str(exc).split())))
                    continue
                except Exception as exc:  # noqa: BLE001 (this request fails; the worker and the others go on)
                    logger.exception("could not prepare a chat for %s", job.version.adapter)
                    job.future.set_exception(server_error(f"the chat could not be prepared: {type(exc).__name__}"))
                    continue
                key = (job.version.adapter, *settings.model_dump(exclude={"batch_size", "max_prompts"}).values())
                groups[key].append((job, settings))
            for (adapter, *_), group in groups.items():
                try:
                    base.model.set_adapter(adapter)
                    settings = group[0][1].model_copy(update={"batch_size": len(group)})
                    replies = generate(
                        base.model, base.tokenizer, [j.chat for j, _ in group], settings, fmt=base.fmt, progress=False
                    )
                except Exception as exc:  # noqa: BLE001 (every waiting request hears of it; the worker goes on)
                    logger.exception("generation failed for %d chats on %s", len(group), adapter)
                    for job, _ in group:
                        job.future.set_exception(server_error(f"generation failed: {type(exc).__name__}"))
                    continue
                for (job, _), reply in zip(group, replies):
                    job.future.set_result(reply)

    def close(self) -> None:
        for base in list(self.bases.values()):
            base.jobs.put(None)


def server_error(message: str) -> ApiError:
    """A failure of ours, not the request's: 500 in OpenAI's shape (the log has the traceback)."""
    return ApiError(500, message + " (see the server log)", type="server_error", code="internal_error")


def context_length(model, tokenizer) -> int:
    """The model's context in tokens: its config's positions (``max_position_embeddings``, GPT-2's ``n_positions``),
    else the tokenizer's ``model_max_length`` when it is a real figure."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 10**7 else 2048


def fit(prompt_tokens: int, max_tokens: int | None, default: int, context: int) -> int:
    """The tokens to generate: ``max_tokens`` when prompt + it fits the context (else a 400 naming both); without
    one, the registered default cut to what the context leaves.

    Raises:
        ApiError: 400 when the prompt leaves no room, or prompt + max_tokens is above the context.
    """
    room = context - prompt_tokens
    if max_tokens is None:
        if room < 1:
            raise ApiError(
                400,
                f"the prompt is {prompt_tokens} tokens after the chat template; the model's context is {context} "
                "tokens: shorten the chat",
                param="messages",
                code="context_length_exceeded",
            )
        return min(default, room)
    if max_tokens > room:
        raise ApiError(
            400,
            f"the prompt is {prompt_tokens} tokens after the chat template and max_tokens is {max_tokens}: "
            f"{prompt_tokens + max_tokens} is above the model's context of {context} tokens; shorten the chat or "
            f"lower max_tokens to {max(room, 0)}",
            param="messages",
            code="context_length_exceeded",
        )
    return max_tokens


def download(model_name: str, number: str, tracking_uri: str, cache_dir: str | Path) -> Path:
    """The folder ``cache_dir/<name>-v<N>`` holding the version's model (downloaded once; a half download is never
    taken: it goes to a temporary folder beside, renamed when whole)."""
    import shutil
    import tempfile

    import mlflow

    cache_dir = Path(cache_dir)
    folder = cache_dir / f"{model_name}-v{number}"
    if (folder / "MLmodel").exists():
        return folder
    uri = f"models:/{model_name}/{number}"
    mlflow.set_registry_uri(tracking_uri)  # models:/ resolves against the global registry URI
    cache_dir.mkdir(parents=True, exist_ok=True)
    part = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{folder.name}-"))
    mlflow.artifacts.download_artifacts(uri, dst_path=str(part), tracking_uri=tracking_uri)
    if not (part / "MLmodel").exists():
        shutil.rmtree(part, ignore_errors=True)
        raise RuntimeError(f"{uri}: the registry's artifacts hold no MLmodel (its artifact store is gone?)")
    shutil.rmtree(folder, ignore_errors=True)
    part.rename(folder)
    return folder


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
