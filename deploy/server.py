"""The stable address as a process: it serves whatever the registry's ``champion`` alias names and follows it.

``empathy-distill serve`` runs it in the foreground; the pipeline's ``deploy_model`` step starts it detached once
(:mod:`deploy.client`) and afterwards only waits until it serves the new champion: a promotion or a rollback
changes what the same URL answers with, and no client learns a second port. The switch itself (load the new
version beside the old, warm it, swap the route) is in :mod:`empathy_distill.serving.router`; the HTTP
application (OpenAI's chat API, MLflow's ``/invocations``, ``/health``) is :mod:`deploy.app`. Chats are decoded
with continuous batching (:mod:`empathy_distill.serving.engine`).

    python -m deploy.server --model-name empathy-student --port 5005   # MLFLOW_TRACKING_URI from the environment
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import sys
import time
from pathlib import Path

from deploy.app import build_app
from empathy_distill.serving.base_model import BasePool, BaseRouter
from empathy_distill.serving.pool import Pool
from empathy_distill.serving.router import Router


def run(
    model_name: str,
    tracking_uri: str,
    host: str,
    port: int,
    state_dir: str | Path,
    default: str = "champion",
    max_concurrency: int = 32,
    poll_s: float = 1.0,
    max_loaded: int = 4,
    dtype: str = "version",
    merge: bool = True,
    decoder: str = "auto",
) -> None:
    """Loads the default route, then serves until SIGTERM/SIGINT (uvicorn), following the registry meanwhile.

    Raises:
        RuntimeError: the default route names no version, or it does not load.
    """
    state_dir = Path(state_dir)
    pool = Pool(
        model_name,
        tracking_uri,
        state_dir / "versions",
        max_loaded=max_loaded,
        dtype=dtype,
        merge=merge,
        decoder=decoder,
    )
    url = f"http://{host}:{port}"
    router = Router(
        pool,
        default=default,
        poll_s=poll_s,
        state_file=state_dir / "live.json",
        state={
            "url": url,
            "host": host,
            "port": port,
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "log": str(state_dir / "server.log"),
        },
    )
    router.refresh()
    if router.routes.get(default) is None:
        reason = router.errors.get(default) or f"no version of {model_name} holds '{default}'"
        raise RuntimeError(f"cannot serve {model_name}@{default}: {reason}")
    router.start()
    serve_until_stopped(router, host, port, max_concurrency)


def serve_until_stopped(router, host: str, port: int, max_concurrency: int) -> None:
    """The app over ``router`` in uvicorn until SIGTERM/SIGINT; then the router (and its engines) stop."""
    import uvicorn

    config = uvicorn.Config(
        build_app(router, max_concurrency),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        # a backstop for memory, far above the admission limit: the app answers 429 with Retry-After itself, while
        # uvicorn beyond its limit answers a plain-text 503 without one
        limit_concurrency=max(512, 16 * max_concurrency),
        timeout_graceful_shutdown=15,
    )
    try:
        uvicorn.Server(config).run()
    finally:
        router.stop()


def run_base(
    model: str,
    host: str,
    port: int,
    cache_dir: str | Path,
    dtype: str = "auto",
    decoder: str = "auto",
    max_concurrency: int = 32,
    system_prompt: str = "",
) -> None:
    """Serves one unadapted model (a preset, folder, GGUF path or hub id) until SIGTERM/SIGINT: the same API, no
    registry (``serve --base``)."""
    router = BaseRouter(BasePool(model, cache_dir, dtype=dtype, decoder=decoder, system_prompt=system_prompt))
    serve_until_stopped(router, host, port, max_concurrency)


def quiet_loading() -> None:
    """No progress bars from downloads and weight loading in a server's log; no telemetry."""
    for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"):
        os.environ.setdefault(name, "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="serve a registered model's champion at one stable address")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5005)
    parser.add_argument("--state-dir", default=".cache/deploy")
    parser.add_argument("--default", default="champion", help="champion, another alias, or a pinned version number")
    parser.add_argument("--max-concurrency", type=int, default=32)
    parser.add_argument("--poll-s", type=float, default=1.0)
    parser.add_argument("--max-loaded", type=int, default=4)
    parser.add_argument("--dtype", default="version", choices=["version", "float32", "bfloat16", "int8"])
    parser.add_argument("--no-merge", action="store_true", help="never merge an adapter into its base's weights")
    parser.add_argument(
        "--decoder",
        default="auto",
        choices=["auto", "packed", "transformers"],
        help="auto: our packed decoding pass for Llama-family bfloat16 weights on a CPU; transformers: never",
    )
    args = parser.parse_args(argv)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1 <pid>: every thread's stack into the log
    quiet_loading()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run(
            args.model_name,
            os.environ.get("MLFLOW_TRACKING_URI", ""),
            args.host,
            args.port,
            args.state_dir,
            args.default,
            args.max_concurrency,
            args.poll_s,
            args.max_loaded,
            dtype=args.dtype,
            merge=not args.no_merge,
            decoder=args.decoder,
        )
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
