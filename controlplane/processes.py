"""Supervised child processes for local runs (the demo, benchmarks): start, wait ready, stop all."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field


class ProcessFailed(Exception):
    """A child exited or never became ready; the message carries its last output lines."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: str

    def tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-lines:]).decode(errors="replace")
        except OSError:
            return ""


def port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class ProcessGroup:
    log_dir: str
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        log_path = f"{self.log_dir}/{name}.log"
        log_file = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its whole life
        process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env)
        log_file.close()
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def wait_http_ok(self, child: Child, url: str, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if child.process.poll() is not None:
                raise ProcessFailed(f"{child.name} exited with code {child.process.returncode}:\n"
                                    f"{child.tail()}")
            with contextlib.suppress(urllib.error.URLError, OSError), \
                    urllib.request.urlopen(url, timeout=1.0) as response:
                if response.status < 500:
                    return
            time.sleep(0.1)
        raise ProcessFailed(f"{child.name} was not ready at {url} after {timeout_s:.0f}s:\n{child.tail()}")

    def first_exited(self) -> Child | None:
        return next((c for c in self.children if c.process.poll() is not None), None)

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop children in reverse start order, each drained (SIGTERM) before the next, so nothing
        still running depends on one already gone; SIGKILL what is left when `timeout_s` runs out."""
        deadline = time.monotonic() + timeout_s
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
