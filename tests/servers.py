"""Real OpenAI-compatible servers for tests: started on 127.0.0.1, awaited
until they answer, stopped afterwards."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(
    cmd: list[str],
    port: int,
    *,
    name: str,
    ready_path: str,
    ready: Callable[[Any], bool],
    timeout_s: float,
) -> Iterator[str]:
    """Start ``cmd`` (serving on ``port``), yield its base URL once
    ``GET ready_path`` returns JSON that ``ready`` accepts; then stop it."""
    log = open(os.devnull, "w")  # noqa: SIM115 - closed after the server stops
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"{base}{ready_path}", timeout=2) as r:
                    if ready(json.load(r)):
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"{name} did not come up in {timeout_s:.0f} s")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
