"""Serving the champion: MLflow's model server on loopback (see server.py) and, on GPUs, vLLM (see README.md)."""
