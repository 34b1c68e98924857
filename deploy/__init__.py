"""Serving the champion adapter (MLflow model server; vLLM with LoRA on GPUs)."""
