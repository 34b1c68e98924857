"""Serving the champion at one stable address: the HTTP application (app.py), the server process that follows the
registry's aliases (server.py), the client that starts, waits for and stops it (client.py), a load generator
(loadtest.py); vLLM on GPUs through ``empathy-distill deploy vllm`` (README.md)."""
