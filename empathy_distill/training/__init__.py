"""Training: the student factory, LoRA SFT, DPO, adapters and generation (imports no ZenML)."""
