"""Peer gateways measured in the same table, against the same upstream.

Only LiteLLM's proxy for now. It is never installed by the bench: the caller points
`--peer-python` at an interpreter (typically a separate venv) that already has
`litellm[proxy]`, and the peer is skipped with a message when it does not.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Final

import yaml

from bench.procs import Child, Children
from bench.scenario import UPSTREAM_KEY, UPSTREAM_MODEL

PEERS: Final = ("litellm",)
LITELLM_MASTER_KEY: Final = "sk-bench-master-key"  # LiteLLM wants master keys to start with sk-
LITELLM_MODEL: Final = "bench"
LITELLM_READY_PATH: Final = "/health/readiness"


def litellm_available(python: str) -> bool:
    """Whether `python` can import LiteLLM's proxy server."""
    try:
        done = subprocess.run(
            [python, "-c", "import litellm.proxy.proxy_server"],
            capture_output=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def litellm_config(upstream_port: int) -> str:
    """LiteLLM proxy config: model `bench` -> the mock upstream as an OpenAI-compatible API."""
    config = {
        "model_list": [
            {
                "model_name": LITELLM_MODEL,
                "litellm_params": {
                    "model": f"openai/{UPSTREAM_MODEL}",
                    "api_base": f"http://127.0.0.1:{upstream_port}/v1",
                    "api_key": UPSTREAM_KEY,
                },
            }
        ],
        "general_settings": {"master_key": LITELLM_MASTER_KEY},
        # Telemetry would try the network, which this machine does not have.
        "litellm_settings": {"telemetry": False},
    }
    return yaml.safe_dump(config, sort_keys=False)


def start_litellm(children: Children, python: str, port: int, upstream_port: int, work_dir: Path) -> Child:
    """Start LiteLLM's proxy with one worker on 127.0.0.1:port and wait until it is ready."""
    config_path = work_dir / "litellm.yaml"
    config_path.write_text(litellm_config(upstream_port))
    child = children.start(
        "litellm",
        [
            python,
            "-m",
            "litellm.proxy.proxy_cli",
            "--config",
            str(config_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
    )
    child.wait_ready(port, LITELLM_READY_PATH, timeout=120)
    return child
