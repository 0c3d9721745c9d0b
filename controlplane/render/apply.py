"""Applying generated nginx includes: render -> write the release -> test it in the main config,
standing at DIR in a private mount namespace (as root; else a copy on its own before the swap and
the main config after it) -> atomic swap -> reload -> verify the version and every tenant's site,
and on any failure restore the previous files and reload again. The tests are in nginx_check.

Layout of an applied directory DIR (what nginx.conf includes as DIR/http.conf):
    DIR              a symlink to the live release
    DIR.releases/    one folder per applied version (the last few are kept for restores)
Swapping the symlink is a single rename, so nginx never sees a half-written directory. A new
release writes only the files whose content changed: the others are hard links to the live
release's (same inode, same mtime), so flipping one tenant writes its two files and version.conf,
whatever the number of tenants. No file of a release is ever written in place, so the previous
release stays intact for a restore.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from controlplane.config.model import RoutingConfig
from controlplane.errors import EnvironmentProblem
from controlplane.http_failure import describe
from controlplane.render.nginx import VERSION_PATH, Rendering, render_in
from controlplane.render.nginx_check import (
    MainConfigTest,
    NginxFailure,
    check_alone,
    check_snippets_in_place,
    in_place_available,
    judge_main_config,
    memory_folder,
    rendered_size,
)
from controlplane.render.nginx_reload import Reload, pid_file_of
from controlplane.render.probe import regressions, run_probes, site_probes, to_ask_again

KEEP_RELEASES: Final = 5
# Applies closer together than this are spaced out: each reload leaves old workers draining.
MIN_RELOAD_INTERVAL_S: Final = 2.0


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
    return version_answer(verify_url, host, timeout_s)[0]


def version_answer(verify_url: str, host: str | None, timeout_s: float = 2.0) -> tuple[str | None, str]:
    """(the version nginx serves at the URL, or None and why not: connection refused, timed out,
    HTTP 404, not JSON, no version in it)."""
    request = urllib.request.Request(verify_url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, describe(exc, timeout_s)
    version = body.get("version") if isinstance(body, dict) else None
    return (str(version), "") if version is not None else (None, "answers JSON without a version")


def verify_target(config: RoutingConfig, verify_url: str | None) -> tuple[str, str | None]:
    """Where to read the live version: the default server, else a platform host, else a tenant host
    with a generated server block, else the first tenant's (whose own server block includes its API)."""
    url = verify_url or f"http://127.0.0.1:{config.nginx.listen_ports[0]}{VERSION_PATH}"
    if config.nginx.default_server or not (config.tenants or config.platform_subdomains):
        return url, None
    if config.platform_subdomains:
        return url, f"{sorted(config.platform_subdomains)[0]}.{config.base_domain}"
    served = [slug for slug in sorted(config.tenants) if config.site_of(slug).mode != "snippet"]
    return url, f"{(served or sorted(config.tenants))[0]}.{config.base_domain}"


def apply(config: RoutingConfig, directory: Path, *, reload_command: Sequence[str] | None, main_config: Path | None,
          verify_url: str | None = None, verify_timeout_s: float = 10.0) -> ApplyReport:
    """`main_config` is the config nginx runs with (None: nginx's own default). `reload_command`
    None: a SIGHUP to the master whose pid file that config names."""
    directory = directory.absolute()
    releases = directory.parent / f"{directory.name}.releases"
    releases.mkdir(parents=True, exist_ok=True)
    url, host = verify_target(config, verify_url)
    with _locked(directory), tempfile.TemporaryDirectory(prefix="dualstack-nginx-check-",
                                                          dir=memory_folder(rendered_size(config))) as tmp:
        # Tested in place (root), the candidate is the release itself; else nginx -t reads a copy
        # rendered for a temporary folder, from the same rendering of the templates.
        copy_folder = None if in_place_available() else Path(tmp) / "dualstack"
        rendering, *for_test = render_in(config, [directory] + ([copy_folder] if copy_folder else []))
        previous_target = directory.resolve() if directory.is_symlink() else None
        previous = previous_target.name.split("-")[0] if previous_target else None
        was_live = live_version(url, host)
        if previous == rendering.version and was_live == rendering.version:
            return ApplyReport(rendering.version, previous, False, ["already live: nothing to do"])
        report = ApplyReport(rendering.version, previous, True)
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
        changed = write_release(rendering, staging, previous_target)
        os.replace(staging, release)
        report.steps.append(f"rendered version {rendering.version} into {release.name} ({len(changed)} of "
                            f"{len(rendering.files)} files changed; the others linked from the previous release)")
        plan = site_probes(config, first=_tenants_of(changed), seed=rendering.version)
        sites_before = run_probes(url, plan.probes)
        if previous_target is not None:
            since = time.time() - previous_target.stat().st_mtime
            if since < MIN_RELOAD_INTERVAL_S:
                time.sleep(MIN_RELOAD_INTERVAL_S - since)
                report.steps.append("waited: the previous apply was under 2 s ago")
        try:
            tested = _test_in_place(config, rendering, directory, release, main_config, report) \
                if previous_target is not None and copy_folder is None else None
            if tested is None:
                copy = for_test[0] if for_test else render_in(config, [Path(tmp) / "dualstack"])[0]
                check_alone(config, copy, Path(tmp))
                report.steps.append("nginx -t passed on the candidate")
        except NginxFailure as failure:
            unchanged = f"{directory} still points at {previous_target.name}" if previous_target else \
                f"{directory} was not made"
            raise NginxFailure(f"{failure}\n" + "\n".join(report.steps) + f"\nnothing changed: {unchanged}") from None
        _swap(directory, release)
        report.steps.append(f"{directory} now points at {release.name}")
        reload = Reload(reload_command, main_config)
        try:
            if tested is None:
                tested = judge_main_config(main_config, directory)
                report.steps.append(f"nginx -t passed on {tested.tested}")
            if reload_command is None:
                reload = Reload(None, main_config, pid_file_of(tested.dump))
            reload.run()
            report.steps.append(f"reload signalled ({reload.describe()})")
            _wait_live(url, host, rendering.version, verify_timeout_s)
            report.steps.append(f"version {rendering.version} is live at {url}")
            again = to_ask_again(sites_before)
            if lost := regressions(sites_before, run_probes(url, again)):
                raise NginxFailure("\n".join(lost))
            unasked = len(plan.probes) - len(sites_before)
            report.steps.append(f"{plan.describe()} answer as before ({len(again)} answered before"
                                + (f"; {unasked} not asked: the probe budget ran out" if unasked else "") + ")")
        except (NginxFailure, OSError) as failure:  # OSError: a reload this user may not signal, say
            _restore(directory, previous_target, reload, report)
            if was_live is not None:
                _confirm_restored(url, host, was_live, verify_timeout_s, report)
            raise NginxFailure(f"{failure}\n" + "\n".join(report.steps)) from None
        _prune(releases, keep={release.name, previous_target.name if previous_target else ""})
        return report


def _test_in_place(config: RoutingConfig, rendering: Rendering, directory: Path, release: Path,
                   main_config: Path | None, report: ApplyReport) -> MainConfigTest | None:
    """Before anything changes, one `nginx -T` of the main config with the release bind-mounted at
    DIR (it tests the candidate where ops' server blocks are, and proves the main config reads
    DIR/http.conf), then the snippet-mode API includes in a server block each (ops may include them
    nowhere yet). Both nginx runs at once: two processes, each parsing its own share. None when no
    private mount namespace can be had: test a copy instead."""
    try:
        with ThreadPoolExecutor(max_workers=1) as beside:
            snippets_tested = beside.submit(check_snippets_in_place, config, rendering, directory, release)
            try:
                tested = judge_main_config(main_config, directory, candidate=release)
            finally:
                snippets_tested.exception()  # the main config's failure first; both runs over either way
            snippets = snippets_tested.result()
    except EnvironmentProblem as problem:
        report.steps.append(f"testing in place was refused ({problem}): testing a copy instead")
        return None
    report.steps.append(f"nginx -t passed on {tested.tested}" + (
        f" and on {snippets} snippet-mode API include(s), each in a server block" if snippets else ""))
    return tested


def write_release(rendering: Rendering, staging: Path, previous: Path | None) -> list[str]:
    """Write `rendering` into the new folder `staging`: a file the previous release holds with the
    same content is hard-linked from it, the others are written. Returns those written."""
    written = []
    rendering.make_folders(staging)
    for relative, content in rendering.files.items():
        target = staging / relative
        if previous is not None and _same_content(previous / relative, content):
            try:
                os.link(previous / relative, target)
                continue
            except OSError:  # another file system, or links refused: write it instead
                pass
        target.write_text(content)
        written.append(relative)
    return written


def _same_content(path: Path, content: str) -> bool:
    try:
        return path.is_file() and not path.is_symlink() and path.read_text() == content
    except (OSError, UnicodeDecodeError):
        return False


def _tenants_of(changed: list[str]) -> set[str]:
    """The tenants whose generated files changed: their hosts are probed first."""
    return {Path(relative).stem for relative in changed if relative.startswith(("tenants/", "api/"))}


def _wait_live(verify_url: str, host: str | None, version: str, timeout_s: float, confirmations: int = 5) -> None:
    """The new version must answer several times in a row: just after a reload, old workers may
    still accept a connection or two before they stop listening."""
    deadline = time.monotonic() + timeout_s
    seen, problem, in_a_row = None, "", 0
    while time.monotonic() < deadline:
        seen, problem = version_answer(verify_url, host)
        in_a_row = in_a_row + 1 if seen == version else 0
        if in_a_row >= confirmations:
            return
        time.sleep(0.05)
    answer = (f"answers version {seen}, expected {version} (see nginx's error log)" if seen is not None
              else f"{problem}, expected version {version} (is nginx listening there? see --verify-url)")
    on = f" (Host: {host})" if host else ""
    raise NginxFailure(f"the reload did not take effect within {timeout_s:g} s: {verify_url}{on}: {answer}")


def _restore(directory: Path, previous: Path | None, reload: Reload, report: ApplyReport) -> None:
    if previous is None:
        directory.unlink(missing_ok=True)
        report.steps.append("removed the new files (there was no previous version)")
    else:
        _swap(directory, previous)
        report.steps.append(f"restored {previous.name}")
    try:
        reload.run()
        report.steps.append("reloaded with the previous files")
    except (NginxFailure, OSError) as failure:
        report.steps.append(f"reload after restoring failed too: {failure}")


def _confirm_restored(url: str, host: str | None, version: str, timeout_s: float, report: ApplyReport) -> None:
    """Return only once nginx serves what it served before (old workers drain after a reload)."""
    try:
        _wait_live(url, host, version, timeout_s)
        report.steps.append(f"version {version} is live again")
    except NginxFailure as failure:
        report.steps.append(f"the previous version is not confirmed live: {failure}")


def _prune(releases: Path, keep: set[str]) -> None:
    candidates = sorted((p for p in releases.iterdir() if p.is_dir() and not p.name.startswith(".")),
                        key=lambda p: p.stat().st_mtime, reverse=True)
    for old in candidates[KEEP_RELEASES:]:
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
