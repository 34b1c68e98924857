"""Checks on a trained stage: the adapter's weights moved (by hash), DPO's pairs were not told apart at once."""

from __future__ import annotations

import hashlib


class AdapterUnchanged(RuntimeError):
    """A training stage ended with the adapter weights exactly as they started."""


def adapter_hash(model, adapter: str = "default") -> str:
    """sha256 over the named adapter's LoRA tensors, in name order."""
    digest = hashlib.sha256()
    tensors = sorted((name, p) for name, p in model.named_parameters() if f".{adapter}." in name and "lora_" in name)
    if not tensors:
        raise ValueError(f"model has no LoRA tensors for adapter '{adapter}'")
    for name, param in tensors:
        digest.update(name.replace(f".{adapter}.", ".").encode())
        digest.update(param.detach().float().cpu().numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def require_change(stage: str, before: str, after: str) -> None:
    if before == after:
        raise AdapterUnchanged(
            f"{stage}: training changed no adapter weight (hash {after[:19]}); check the learning rate, max_steps "
            "and that labels are not all masked"
        )


def separable_warning(history: list[dict[str, float]], total_steps: int) -> str | None:
    """A warning when DPO's reward accuracy reaches 1.0 within the first tenth of the steps: the pairs are told
    apart at once (by length or style), so they teach the student little about empathy."""
    for h in history:
        if h.get("rewards/accuracies", 0.0) >= 1.0 and h.get("step", 0) <= max(1, total_steps // 10):
            return (
                f"DPO reward accuracy reached 1.0 at step {int(h['step'])} of {total_steps} (within the first tenth): "
                "the pairs are trivially separable and teach little; try pairs closer in quality (another method or "
                "strategy) or a lower beta"
            )
    return None
