"""``lineage --verify``: what a version's lineage claims, re-checked against what is there now.

- **adapter**: the registry's copy is downloaded and its LoRA tensors re-hashed the way training
  hashed them (``lineage.adapter_hash``);
- **data**: the file at ``lineage.data_path`` re-hashed with the run's data and validation
  settings against ``inputs.data``: unchanged, changed since registration, or gone;
- **prompts**: the method's templates re-hashed against ``lineage.prompt_hash``;
- **prompt registry**: each prompt version the version used (``lineage.prompts``) read back from MLflow's prompt
  registry, its text compared with the template's;
- **base**: the bundled copy, or the referenced folder, against the registered fingerprint (a
  hub id is checked where its revision is in the local cache); a GGUF base's file re-hashed
  against its registered sha256;
- **promotions**: the promotion history's chain, and the champion alias against its end.

Each check gives one line; the version verifies only when every check holds.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from empathy_distill.prompts import method_prompt_hash
from empathy_distill.registry.history import check_chain
from empathy_distill.registry.inputs import data_part
from empathy_distill.registry.promotion import Promotions
from empathy_distill.registry.prompt_registry import recorded_refs, registry_mismatches
from empathy_distill.training.fingerprint import model_fingerprint
from empathy_distill.training.sources import recorded_file, sha256_file


@dataclass
class Check:
    name: str
    ok: bool
    line: str


@dataclass(frozen=True)
class Verification:
    """Every check on one version; ``ok`` when all hold."""

    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.ok]

    def as_dict(self) -> dict[str, Any]:
        """``{"ok": bool, "checks": [{"name", "ok", "line"}, ...]}``: the ``verify`` section of ``lineage --json``."""
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}


def weights_hash(adapter_dir: str | Path) -> str:
    """sha256 over a saved adapter's LoRA tensors in name order, as float32: the same value
    :func:`empathy_distill.training.checks.adapter_hash` gives for the loaded adapter.

    Raises:
        ValueError: no ``adapter_model.safetensors`` there, or no LoRA tensor in it.
    """
    from safetensors.torch import load_file

    path = Path(adapter_dir) / "adapter_model.safetensors"
    if not path.is_file():
        raise ValueError(f"{path} is missing")
    tensors = load_file(str(path))
    names = sorted(n for n in tensors if "lora_" in n)
    if not names:
        raise ValueError(f"{path} holds no LoRA tensor")
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode())
        digest.update(tensors[name].float().cpu().numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def _short(value: str | None) -> str:
    return (value or "none")[:19]


def check_adapter(tags: dict[str, str], adapter_dir: str) -> Check:
    recorded = tags.get("lineage.adapter_hash")
    if not recorded:
        return Check("adapter", False, "adapter: the version records no lineage.adapter_hash: nothing to check against")
    try:
        found = weights_hash(adapter_dir)
    except Exception as exc:  # noqa: BLE001 (a corrupt file is a finding, not a crash)
        return Check("adapter", False, f"adapter: the registry's copy cannot be read ({' '.join(str(exc).split())})")
    if found != recorded:
        return Check(
            "adapter",
            False,
            f"adapter: CHANGED: the registry's copy hashes {_short(found)}, registered {_short(recorded)}",
        )
    return Check("adapter", True, f"adapter: unchanged ({_short(found)}, re-hashed from the registry's copy)")


def check_gguf_base(record: dict[str, Any]) -> Check:
    """A GGUF base: the file re-hashed against the registered sha256."""

    want = str(record.get("sha256", ""))
    origin = f"{record['package']}=={record['package_version']}, " if record.get("package") else ""
    path = recorded_file(record)
    if path is None:
        return Check("base", False, f"base: GONE: the GGUF file {record.get('path')} ({origin}sha256 {want[:12]})")
    found = sha256_file(path)
    if found != want:
        return Check("base", False, f"base: CHANGED: {path} hashes {found[:12]}, registered {want[:12]}")
    return Check("base", True, f"base: unchanged ({origin}{path.name}, sha256 {found[:12]})")


def check_base(cfg: dict[str, Any], artifacts: dict[str, str]) -> Check:

    if cfg.get("base_source") == "gguf":
        return check_gguf_base(cfg.get("base_gguf") or {})
    recorded = cfg.get("base_fingerprint")
    bundled = cfg.get("base_source") == "artifact" and "base" in artifacts
    where = "the bundled copy" if bundled else str(cfg.get("base_model"))
    if not recorded:
        return Check("base", False, f"base: {where}: no registered fingerprint to check against")
    if not bundled and not Path(str(cfg.get("base_model"))).expanduser().exists() and recorded.startswith("hub:"):
        found = model_fingerprint(str(cfg["base_model"]))
        if "@" not in found:
            return Check("base", False, f"base: {where}: not in the local hub cache, revision {recorded} not checkable")
    else:
        found = model_fingerprint(artifacts["base"] if bundled else str(cfg["base_model"]))
    if not bundled and found.startswith("hub:") and not recorded.startswith("hub:"):
        return Check("base", False, f"base: GONE: the referenced folder {where} no longer exists")
    if found != recorded:
        return Check(
            "base", False, f"base: CHANGED: {where} fingerprints {_short(found)}, registered {_short(recorded)}"
        )
    return Check("base", True, f"base: unchanged ({where}, {_short(found)})")


def check_data(tags: dict[str, str], config: dict[str, Any]) -> Check:
    # import-time: empathy_distill.data.hashing 0.6 s to import (empathy_distill.registry.verify alone 0.1 s)
    from empathy_distill.data.hashing import file_fingerprint

    path, recorded = tags.get("lineage.data_path"), tags.get("inputs.data")
    if not path or not recorded:
        return Check("data", False, "data: the version records no lineage.data_path or inputs.data")
    if not Path(path).exists():
        return Check("data", False, f"data: GONE: {path} no longer exists")
    if "data" not in config or "validation" not in config:
        return Check("data", False, f"data: {path}: the run's resolved config is missing, its hash cannot be redone")
    found = data_part(file_fingerprint(path), config["data"], config["validation"])
    if found != recorded:
        return Check("data", False, f"data: CHANGED since registration: {path} (now {_short(found)})")
    return Check("data", True, f"data: unchanged ({path})")


def check_prompts(tags: dict[str, str], templates_dir: str | Path | None = None) -> Check:

    recorded, method, strategy = (tags.get(f"lineage.{k}") for k in ("prompt_hash", "method", "strategy"))
    if not recorded or not method:
        return Check("prompts", False, "prompts: the version records no lineage.prompt_hash or lineage.method")
    try:
        found = method_prompt_hash(method, strategy or "none", templates_dir)
    except KeyError as exc:
        return Check("prompts", False, f"prompts: {exc}")
    where = str(templates_dir) if templates_dir else "the installed templates"
    if found != recorded:
        return Check(
            "prompts",
            False,
            f"prompts: CHANGED: {method}/{strategy} templates in {where} hash {_short(found)}, registered "
            f"{_short(recorded)}",
        )
    return Check("prompts", True, f"prompts: unchanged ({method}/{strategy}, {_short(found)})")


def check_prompt_registry(client: Any, tags: dict[str, str], templates_dir: str | Path | None = None) -> Check:

    refs = recorded_refs(tags)
    if refs is None:
        return Check("prompt registry", True, "prompt registry: none recorded (the version predates it)")
    problems = registry_mismatches(client, refs, templates_dir)
    if problems:
        return Check("prompt registry", False, "prompt registry: " + "; ".join(problems))
    names = ", ".join(f"{r.template} v{r.version}" for r in refs)
    return Check("prompt registry", True, f"prompt registry: {len(refs)} versions match the templates ({names})")


def check_promotions(client: Any, history: Any, name: str) -> Check:

    if history is None:
        return Check("promotions", False, "promotions: the promotion history is not reachable")
    alias = Promotions(client, history=None, lock=None).alias(name)
    problems = check_chain(history.entries(name), alias)
    if problems:
        return Check("promotions", False, "promotions: " + "; ".join(problems))
    champion = f"v{alias}" if alias else "none"
    return Check("promotions", True, f"promotions: the history's chain holds and ends with the champion ({champion})")


def verify(
    client: Any, history: Any, name: str, version: str, tracking_uri: str, templates_dir: str | Path | None = None
) -> Verification:
    """Every check of the module docstring for one registered version."""
    # import-time: empathy_distill.serving.pool 0.8 s to import (empathy_distill.registry.verify alone 0.1 s)
    from empathy_distill.serving.pool import download, read_model

    mv = client.get_model_version(name, version)
    tags = dict(mv.tags)
    checks: list[Check] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            cfg, artifacts = read_model(download(name, str(version), tracking_uri, tmp), overrides=False)
        except Exception as exc:  # noqa: BLE001 (an artifact store that lost the model is a finding)
            reason = " ".join(str(exc).split())
            checks.append(
                Check("adapter", False, f"adapter: GONE: the registry's copy cannot be downloaded ({reason})")
            )
            checks.append(Check("base", False, "base: not checked (the model cannot be downloaded)"))
        else:
            checks.append(check_adapter(tags, artifacts.get("adapter", "")))
            checks.append(check_base(cfg, artifacts))
        config: dict[str, Any] = {}
        if mv.run_id:
            try:
                config = json.loads(Path(client.download_artifacts(mv.run_id, "config/resolved.json", tmp)).read_text())
            except Exception:  # noqa: BLE001 (reported by check_data)
                config = {}
    checks.append(check_data(tags, config))
    checks.append(check_prompts(tags, templates_dir))
    checks.append(check_prompt_registry(client, tags, templates_dir))
    checks.append(check_promotions(client, history, name))
    return Verification(checks)


def verify_lines(result: Verification) -> list[str]:
    lines = ["verify:"] + [("  ok    " if c.ok else "  FAIL  ") + c.line for c in result.checks]
    failed = result.failed
    lines.append("  verified: every check holds" if not failed else f"  NOT verified: {', '.join(failed)}")
    return lines
