"""Testing and applying generated nginx includes: render -> test -> atomic swap -> reload -> verify,
and on any failure restore the previous files and reload again.

Layout of an applied directory DIR (what nginx.conf includes as DIR/http.conf):
    DIR              a symlink to the live release
    DIR.releases/    one folder per applied version (the last few are kept for restores)
Swapping the symlink is a single rename, so nginx never sees a half-written directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from controlplane.config.model import RoutingConfig
from controlplane.render.nginx import VERSION_PATH, Rendering, render

KEEP_RELEASES: Final = 5
# Applies closer together than this are spaced out: each reload leaves old workers draining.
MIN_RELOAD_INTERVAL_S: Final = 2.0


class NginxFailure(Exception):
    """nginx refused the config, the reload did not take, or the files could not be put in place.
    The message carries nginx's own words."""


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if found is None:
        raise NginxFailure("nginx is not installed (apt-get install nginx)")
    return found


def wrapper_config(prefix: Path, include_dir: Path) -> str:
    """A minimal main config around a candidate: nginx -t cannot test an include on its own."""
    temp = prefix / "temp"
    return textwrap.dedent(f"""\
        pid {prefix}/nginx.pid;
        error_log {prefix}/error.log;
        events {{ worker_connections 64; }}
        http {{
            client_body_temp_path {temp}/body;
            proxy_temp_path {temp}/proxy;
            fastcgi_temp_path {temp}/fastcgi;
            uwsgi_temp_path {temp}/uwsgi;
            scgi_temp_path {temp}/scgi;
            include {include_dir}/http.conf;
        }}
        """)


def run_nginx_test(args: Sequence[str]) -> None:
    result = subprocess.run([nginx_binary(), "-t", *args], capture_output=True, text=True, check=False,
                            timeout=60)
    if result.returncode != 0:
        raise NginxFailure((result.stderr or result.stdout).strip())


def check(config: RoutingConfig) -> Rendering:
    """Render into a temporary prefix and run the real `nginx -t` on a wrapper around it."""
    with tempfile.TemporaryDirectory(prefix="dualstack-nginx-check-") as tmp:
        prefix = Path(tmp)
        include_dir = prefix / "dualstack"
        rendering = render(config, include_dir)
        rendering.write(include_dir)
        (prefix / "temp").mkdir()
        (prefix / "nginx.conf").write_text(wrapper_config(prefix, include_dir))
        run_nginx_test(["-q", "-p", str(prefix), "-c", str(prefix / "nginx.conf")])
        return rendering


@dataclass
class ApplyReport:
    version: str
    previous: str | None
    changed: bool
    steps: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One apply at a time per directory (a second one waits for the first to finish)."""
    lock_path = directory.parent / f".{directory.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _swap(link: Path, target: Path) -> None:
    temporary = link.parent / f".{link.name}.swap"
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    temporary.symlink_to(target)
    os.replace(temporary, link)  # atomic: nginx sees the old tree or the new one, never a mix


def live_version(verify_url: str, host: str | None, timeout_s: float = 2.0) -> str | None:
    request = urllib.request.Request(verify_url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return str(json.loads(response.read()).get("version"))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def verify_target(config: RoutingConfig, verify_url: str | None) -> tuple[str, str | None]:
    """Where to read the live version: the default server, else the first tenant's host."""
    url = verify_url or f"http://127.0.0.1:{config.nginx.listen_ports[0]}{VERSION_PATH}"
    if config.nginx.default_server or not config.tenants:
        return url, None
    return url, f"{sorted(config.tenants)[0]}.{config.base_domain}"


def apply(config: RoutingConfig, directory: Path, *, reload_command: Sequence[str], main_config: Path | None,
          verify_url: str | None = None, verify_timeout_s: float = 10.0) -> ApplyReport:
    directory = directory.absolute()
    releases = directory.parent / f"{directory.name}.releases"
    releases.mkdir(parents=True, exist_ok=True)
    url, host = verify_target(config, verify_url)
    with _locked(directory):
        rendering = render(config, directory)
        previous_target = directory.resolve() if directory.is_symlink() else None
        previous = previous_target.name.split("-")[0] if previous_target else None
        if previous == rendering.version and live_version(url, host) == rendering.version:
            return ApplyReport(rendering.version, previous, False, ["already live: nothing to do"])
        report = ApplyReport(rendering.version, previous, True)
        if previous_target is not None:
            since = time.time() - previous_target.stat().st_mtime
            if since < MIN_RELOAD_INTERVAL_S:
                time.sleep(MIN_RELOAD_INTERVAL_S - since)
                report.steps.append("waited: the previous apply was under 2 s ago")
        if directory.exists() and not directory.is_symlink():
            # First apply over a hand-made directory: keep it as a release to restore to.
            kept = releases / f"manual-{int(time.time())}"
            os.replace(directory, kept)
            _swap(directory, kept)
            previous_target = kept
            report.steps.append(f"kept the existing {directory} as {kept.name}")
        release = releases / f"{rendering.version}-{int(time.time() * 1000)}"
        staging = releases / f".staging-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        rendering.write(staging)
        os.replace(staging, release)
        report.steps.append(f"rendered version {rendering.version} into {release.name}")
        check(config)
        report.steps.append("nginx -t passed on the candidate")
        _swap(directory, release)
        report.steps.append(f"{directory} now points at {release.name}")
        try:
            if main_config is not None:
                run_nginx_test(["-q", "-c", str(main_config)])
                report.steps.append(f"nginx -t passed on {main_config}")
            _run(reload_command)
            report.steps.append("reload signalled")
            _wait_live(url, host, rendering.version, verify_timeout_s)
            report.steps.append(f"version {rendering.version} is live at {url}")
        except NginxFailure as failure:
            _restore(directory, previous_target, reload_command, report)
            raise NginxFailure(f"{failure}\n" + "\n".join(report.steps)) from None
        _prune(releases, keep={release.name, previous_target.name if previous_target else ""})
        return report


def _run(command: Sequence[str]) -> None:
    result = subprocess.run(list(command), capture_output=True, text=True, check=False, timeout=60)
    if result.returncode != 0:
        raise NginxFailure(f"`{' '.join(command)}` failed: {(result.stderr or result.stdout).strip()}")


def _wait_live(verify_url: str, host: str | None, version: str, timeout_s: float, confirmations: int = 5) -> None:
    """The new version must answer several times in a row: just after a reload, old workers may
    still accept a connection or two before they stop listening."""
    deadline = time.monotonic() + timeout_s
    seen, in_a_row = None, 0
    while time.monotonic() < deadline:
        seen = live_version(verify_url, host)
        in_a_row = in_a_row + 1 if seen == version else 0
        if in_a_row >= confirmations:
            return
        time.sleep(0.05)
    raise NginxFailure(f"the reload did not take effect: {verify_url} answers version {seen}, expected {version} "
                       "(see nginx's error log)")


def _restore(directory: Path, previous: Path | None, reload_command: Sequence[str], report: ApplyReport) -> None:
    if previous is None:
        directory.unlink(missing_ok=True)
        report.steps.append("removed the new files (there was no previous version)")
    else:
        _swap(directory, previous)
        report.steps.append(f"restored {previous.name}")
    try:
        _run(reload_command)
        report.steps.append("reloaded with the previous files")
    except NginxFailure as failure:
        report.steps.append(f"reload after restoring failed too: {failure}")


def _prune(releases: Path, keep: set[str]) -> None:
    candidates = sorted((p for p in releases.iterdir() if p.is_dir() and not p.name.startswith(".")),
                        key=lambda p: p.stat().st_mtime, reverse=True)
    for old in candidates[KEEP_RELEASES:]:
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
