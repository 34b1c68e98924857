"""Serving the registry's versions: ``serve`` (the stable OpenAI-style server that follows the champion) and
``deploy vllm`` (the command that serves champion and challenger as LoRA modules on vLLM)."""

from __future__ import annotations

import sys
from pathlib import Path

from app.registry_ops import _exists, mlflow_client, tracking_uri
from deploy.client import port_free
from empathy_distill.config import DistillConfig, StudentConfig
from empathy_distill.errors import ConfigError
from empathy_distill.registry.lineage import parse_model_uri
from empathy_distill.registry.promotion import Promotions
from empathy_distill.serving.gguf_export import KINDS, ExportError, export_gguf, modelfile
from empathy_distill.serving.vllm import LoraModule, VllmError, adapter_rank, has_chat_template, render, serve_argv
from empathy_distill.training.chat import fallback_template
from empathy_distill.training.sources import is_gguf_name
from empathy_distill.training.student import load_student


def serve(config: DistillConfig, model: str | None, host: str, port: int) -> int:
    """Runs the stable server in the foreground: it answers with the champion and follows every promotion."""
    # import-time: deploy.server 2.2 s to import (app.serving_ops alone 0.3 s)
    from deploy.server import quiet_loading, run

    uri = model or f"models:/{config.registry.model_name}@champion"
    try:
        name, version, alias = parse_model_uri(uri)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None

    p = Promotions(mlflow_client(), history=None, lock=None)  # reading the registry needs no promotion history
    found = p.alias(name, alias) if alias else (version if _exists(p, name, version) else None)
    if found is None:
        raise ConfigError(
            f"{uri}: no such version or alias in the registry at {tracking_uri()}"
            + (" (promote a version first)" if alias == "champion" else "")
        )
    if not port_free(host, port):
        raise ConfigError(f"port {port} on {host} is in use: pass --port")
    cfg = config.registry.deploy
    follows = f"follows @{alias}" if alias else "pinned"
    print(
        f"serving {name} v{found} ({follows}) at http://{host}:{port} (POST /v1/chat/completions, GET /v1/models, "
        "POST /invocations, GET /health); Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    quiet_loading()
    try:
        run(
            name,
            tracking_uri(),
            host,
            port,
            Path(cfg.state_dir).resolve(),
            default=alias or str(version),
            max_concurrency=cfg.max_concurrency,
            poll_s=cfg.poll_s,
            max_loaded=cfg.max_loaded,
            dtype=cfg.dtype,
            merge=cfg.merge_adapter,
            decoder=cfg.decoder,
        )
    except RuntimeError as exc:
        raise ConfigError(str(exc)) from None
    return 0


def serve_base(config: DistillConfig, model: str, host: str, port: int, dtype: str | None) -> int:
    """Serves one unadapted model in the foreground: the same API as a registered version, no registry, no key."""
    # import-time: deploy.server 2.2 s to import (app.serving_ops alone 0.3 s)
    from deploy.server import quiet_loading, run_base

    if not port_free(host, port):
        raise ConfigError(f"port {port} on {host} is in use: pass --port")
    if not is_gguf_name(model) and not Path(model).is_dir() and "/" not in model:
        raise ConfigError(f"--base {model}: not a preset, a .gguf file, a model folder or a hub id (owner/name)")
    cfg = config.registry.deploy
    print(
        f"serving {model} (no adapter) at http://{host}:{port}/v1 (POST /v1/chat/completions, GET /v1/models, "
        "GET /health); Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    quiet_loading()
    try:
        run_base(
            model,
            host,
            port,
            Path(config.student.cache_dir).resolve(),
            dtype="auto" if dtype in (None, "version") else dtype,
            decoder=cfg.decoder,
            max_concurrency=cfg.max_concurrency,
        )
    except (OSError, ValueError) as exc:  # a folder without a model, a hub id offline, a file that is not one
        raise ConfigError(f"--base {model}: {' '.join(str(exc).split())[:300]}") from None
    return 0


def vllm_lines(config: DistillConfig, download_dir: str, host: str, port: int) -> list[str]:
    """Downloads the versions ``champion`` and ``challenger`` name and writes the ``vllm serve`` command that serves
    both as LoRA modules on their base (``download_dir/serve.sh``); returns what to print."""
    # import-time: empathy_distill.registry.pyfunc 2.2 s to import (app.serving_ops alone 0.3 s)
    from empathy_distill.registry.pyfunc import base_path, generation_defaults

    # import-time: empathy_distill.serving.pool 0.8 s to import (app.serving_ops alone 0.3 s)
    from empathy_distill.serving.pool import download, read_model

    name = config.registry.model_name
    p = Promotions(mlflow_client(), history=None, lock=None)  # reading the registry needs no promotion history
    out = Path(download_dir).resolve()
    modules, configs, notes = [], {}, []
    try:
        for alias in ("champion", "challenger"):
            number = p.alias(name, alias)
            if number is None:
                notes.append(f"# no @{alias} in the registry")
                continue
            cfg, artifacts = read_model(download(name, number, tracking_uri(), out))
            base = base_path(cfg, artifacts)  # a reference base is checked against the fingerprint it trained with
            key = str(cfg.get("base_fingerprint") or base)
            module = LoraModule(alias, number, artifacts["adapter"], adapter_rank(artifacts["adapter"]), base, key)
            if modules and module.base_key != modules[0].base_key:
                notes.append(f"# @{alias} v{number} is on another base ({base}): left out (one vLLM server, one base)")
                continue
            modules.append(module)
            configs[alias] = cfg
    except (VllmError, RuntimeError) as exc:
        raise ConfigError(str(exc)) from None
    if not modules:
        raise ConfigError(f"'{name}' has no champion in the registry at {tracking_uri()}: promote a version first")
    cfg = configs[modules[0].name]
    template = cfg.get("chat_template")
    if not template and has_chat_template(modules[0].base) is False:
        from transformers import AutoTokenizer

        # what training and our server used for a base without a template
        template = fallback_template(AutoTokenizer.from_pretrained(modules[0].base))[0]
    template_file = None
    if template:
        template_file = out / "chat_template.jinja"
        template_file.write_text(template)
    argv = serve_argv(
        modules,
        served_name=name,
        host=host,
        port=port,
        dtype=str(cfg.get("dtype", "auto")),
        chat_template_file=str(template_file) if template_file else None,
        generation=generation_defaults(cfg),
    )
    command = render(argv)
    served = ", ".join(f"{m.name} v{m.version}" for m in modules)
    (out / "serve.sh").write_text(f"#!/bin/sh\n# {name}: {served}\nexec {command}\n")
    (out / "serve.sh").chmod(0o755)
    lines = [
        f"# {name}: " + ", ".join(f"@{m.name} = v{m.version} (LoRA rank {m.rank})" for m in modules),
        *notes,
        f"# versions downloaded to {out}; the command is also in {out / 'serve.sh'}",
    ]
    system_prompt = cfg.get("system_prompt") or ""
    if system_prompt:
        (out / "system_prompt.txt").write_text(system_prompt)
        lines.append(
            f"# vLLM does not add the registered system prompt (our server does): send {out / 'system_prompt.txt'} "
            "as the first message"
        )
    lines.append(f"# clients: base_url http://{host}:{port}/v1, model " + " or ".join(f'"{m.name}"' for m in modules))
    return [*lines, command]


def gguf_export(model_uri: str, out_dir: str, kinds: list[str], log: bool = True) -> list[str]:
    """Merges a registered version's adapter into its base and writes it as GGUF files (``kinds``: f16, q8_0) with an
    Ollama ``Modelfile`` in ``out_dir``; logs each file to the version's run (``gguf/``) and its sha256 as a version
    tag (``gguf.<kind>.sha256``) unless ``log`` is off. Returns what to print."""
    from peft import PeftModel

    # import-time: empathy_distill.registry.pyfunc 2.2 s to import (app.serving_ops alone 0.3 s)
    from empathy_distill.registry.pyfunc import base_path, generation_defaults

    # import-time: empathy_distill.serving.pool 0.8 s to import (app.serving_ops alone 0.3 s)
    from empathy_distill.serving.pool import download, read_model

    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ConfigError(f"--kinds: unknown {', '.join(unknown)}; known: {', '.join(KINDS)}")
    try:
        name, version, alias = parse_model_uri(model_uri)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    client = mlflow_client()
    p = Promotions(client, history=None, lock=None)
    number = p.alias(name, alias) if alias else (version if _exists(p, name, version) else None)
    if number is None:
        raise ConfigError(f"{model_uri}: no such version or alias in the registry at {tracking_uri()}")
    out = Path(out_dir).resolve() / f"{name}-v{number}"
    cfg, artifacts = read_model(download(name, number, tracking_uri(), out.parent / ".versions"), overrides=False)
    if cfg.get("base_source") != "gguf":
        raise ConfigError(
            f"{name} v{number}'s base is {cfg.get('base_model')} ({cfg.get('base_source')}), not a GGUF file: GGUF "
            "export writes the merged weights into the base file's own metadata; merge the adapter and convert the "
            "folder with llama.cpp's convert_hf_to_gguf.py"
        )
    try:
        base = base_path(cfg, artifacts)  # the base file re-hashed; the dequantised cache rebuilt when gone
    except Exception as exc:  # noqa: BLE001 (MlflowException with the one line)
        raise ConfigError(str(getattr(exc, "message", exc))) from None
    student = StudentConfig(model=base, chat_template=cfg.get("chat_template"), dtype="float32")
    tokenizer, model, fmt = load_student(base, student)
    merged = PeftModel.from_pretrained(model, artifacts["adapter"]).merge_and_unload()
    source = cfg["base_gguf"]["path"]
    lines = [f"# {name} v{number}: adapter merged into {cfg['base_gguf'].get('file') or Path(source).name}"]
    files = []
    for kind in kinds:
        try:
            made = export_gguf(
                merged,
                source,
                out / f"{name}-v{number}-{kind}.gguf",
                kind,
                f"{name} v{number}",
                cfg.get("chat_template"),
            )
        except ExportError as exc:
            raise ConfigError(str(exc)) from None
        files.append(made)
        lines.append(f"{made.path}  {made.kind}  {made.bytes / 1e6:.1f} MB  sha256 {made.sha256}")
    recipe = out / "Modelfile"
    recipe.write_text(
        modelfile(files[0].path.name, fmt, cfg.get("system_prompt") or "", generation_defaults(cfg), tokenizer)
    )
    lines.append(f"{recipe}  (ollama create {name} -f {recipe})")
    if log:
        run_id = client.get_model_version(name, number).run_id
        for made in files:
            client.log_artifact(run_id, str(made.path), "gguf")
            client.set_model_version_tag(name, number, f"gguf.{made.kind}.sha256", made.sha256)
        client.log_artifact(run_id, str(recipe), "gguf")
        lines.append(f"# logged to {name} v{number} (run {run_id}, artifacts gguf/; tags gguf.<kind>.sha256)")
    return lines
