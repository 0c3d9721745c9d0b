"""Making nginx re-read its config. By default a SIGHUP to the master, whose pid file is named in
the `nginx -T` dump `apply` already has (the `pid` directive of the main config, else nginx's
compiled default): `nginx -s reload` would parse the whole config again only to find that pid,
seconds at thousands of tenants. An ops-given `--reload-command` runs as given.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from controlplane.render.nginx_check import NginxFailure, nginx_binary
from controlplane.render.nginx_dump import files_read

_PID_DIRECTIVE: Final = re.compile(r"""\s*pid\s+("[^"]*"|'[^']*'|[^\s;]+)\s*;.*""")  # the whole line
_NGINX_DEFAULT_PID: Final = "logs/nginx.pid"  # nginx's own default when built without --pid-path
MASTER_TITLE: Final = b"nginx: master process"  # how nginx's master names itself in /proc/PID/cmdline


def pid_file_in(dump: str) -> str | None:
    """The `pid` directive of the main config in an `nginx -T` dump (the first file in it), outside
    any block: `pid` is allowed nowhere else. None when the main config does not set it."""
    main = next(iter(files_read(dump).values()), [])
    depth = 0
    for raw in main:
        line = raw.split("#", 1)[0]
        if depth == 0 and (found := _PID_DIRECTIVE.fullmatch(line)):
            return found.group(1).strip("\"'")
        depth += line.count("{") - line.count("}")
    return None


def _compiled(option: str, version_output: str) -> str | None:
    found = re.search(rf"--{option}=(\S+)", version_output)
    return found.group(1) if found else None


def pid_file_of(dump: str) -> Path:
    """Where the master nginx would signal for `nginx -s reload` keeps its pid: relative paths are
    relative to nginx's compiled prefix, as nginx reads them."""
    named = pid_file_in(dump)
    built = ""
    if named is None or not named.startswith("/"):
        result = subprocess.run([nginx_binary(), "-V"], capture_output=True, text=True, check=False, timeout=30)
        built = result.stderr + result.stdout
    path = named or _compiled("pid-path", built) or _NGINX_DEFAULT_PID
    if path.startswith("/"):
        return Path(path)
    return Path(_compiled("prefix", built) or "/usr/local/nginx") / path


@dataclass(frozen=True)
class Reload:
    """`command` (ops' `--reload-command`), or None: SIGHUP to the master named by `pid_file` (if
    that is not known yet, `nginx -s reload` with the main config)."""

    command: Sequence[str] | None
    main_config: Path | None
    pid_file: Path | None = None

    def describe(self) -> str:
        if self.command is not None:
            return f"`{' '.join(self.command)}`"
        return f"SIGHUP to the nginx master ({self.pid_file})" if self.pid_file else "`nginx -s reload`"

    def run(self) -> None:
        if self.command is None and self.pid_file is not None:
            signal_master(self.pid_file)
            return
        command = list(self.command) if self.command is not None else [
            nginx_binary(), *(["-c", str(self.main_config)] if self.main_config else []), "-s", "reload"]
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:  # no such program, or it hung: a failed reload
            raise NginxFailure(f"`{' '.join(command)}` failed: {exc}") from None
        if result.returncode != 0:
            raise NginxFailure(f"`{' '.join(command)}` failed: {(result.stderr or result.stdout).strip()}")


def signal_master(pid_file: Path) -> None:
    """SIGHUP to the nginx master whose pid `pid_file` holds, after making sure that process is an
    nginx master (a stale pid file may name another process)."""
    fix = "start nginx, or pass --reload-command with the way this nginx reloads"
    try:
        text = pid_file.read_text().strip()
    except OSError as exc:
        raise NginxFailure(f"cannot read nginx's pid file {pid_file} ({exc.strerror}), named by the main config "
                           f"(or nginx's built-in default): is nginx running with it? {fix}") from None
    if not text:  # what `nginx -t` leaves when no master runs (it makes the file to test it can)
        raise NginxFailure(f"nginx's pid file {pid_file} is empty: no nginx master runs with this config; {fix}")
    if not text.isdigit() or len(text) > 10 or int(text) <= 1:
        raise NginxFailure(f"nginx's pid file {pid_file} holds {text[:40]!r}, not a process id: {fix}")
    pid = int(text)
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        raise NginxFailure(f"no process {pid} (from {pid_file}) is running: nginx is not running with this "
                           f"config; {fix}") from None
    if not title.startswith(MASTER_TITLE):
        name = title.split(b"\0")[0][:60].decode(errors="replace")
        raise NginxFailure(f"process {pid} (from {pid_file}) is not an nginx master ({name!r}): the pid file is "
                           f"stale; {fix}")
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        raise NginxFailure(f"cannot signal the nginx master {pid} ({exc.strerror}): run as the user nginx runs "
                           f"as (root), or {fix}") from None
