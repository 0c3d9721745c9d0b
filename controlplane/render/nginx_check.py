"""The real `nginx -t` on generated includes: on their own in a wrapper config, and in the main
config nginx runs with, the candidate bind-mounted at DIR in a private mount namespace (nothing
outside it changes). nginx -t warnings that mean nginx ignores part of the config (a server block
that lost its host to another) fail like errors.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import textwrap
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from controlplane.config.model import RoutingConfig
from controlplane.errors import EnvironmentProblem
from controlplane.render.listen_address import address_listens
from controlplane.render.nginx import Rendering, render_in
from controlplane.render.nginx_dump import files_read


class NginxFailure(Exception):
    """nginx refused the config, the reload did not take, or the files could not be put in place.
    The message carries nginx's own words."""


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if found is None:
        raise NginxFailure("nginx is not installed (apt-get install nginx)")
    return found


def wrapper_config(prefix: Path, include_dir: Path, extra: str = "", include: str = "http.conf") -> str:
    """A minimal main config around a candidate: nginx -t cannot test an include on its own.
    `extra` goes into the http block after the include (whole lines)."""
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
            include {include_dir}/{include};
        """) + extra + "}\n"


# Warnings after which nginx -t still passes and a reload still takes, with part of the config not
# in force: a server block that lost its host name to another one (the site it served goes dark),
# listen options of a later server dropped, a directive nginx says it ignores.
IGNORED_BY_NGINX: Final = re.compile(r"conflicting server name|duplicate listen options|protocol options redefined"
                                     r"|\bignored\b")


def run_nginx_test(args: Sequence[str], *, dump: bool = False, within: Sequence[str] = ()) -> str:
    """`nginx -t` (`-T` with `dump`: the answer is every file nginx read, each under a
    `# configuration file PATH:` line), run inside `within` (a command prefix) if given."""
    result = subprocess.run([*within, nginx_binary(), "-T" if dump else "-t", *args], capture_output=True,
                            text=True, check=False, timeout=120)
    output = (result.stderr or ("" if dump else result.stdout)).strip()
    if result.returncode != 0:
        if within and (result.returncode == _MOUNT_FAILED or output.startswith("unshare:")):
            raise EnvironmentProblem("testing the main nginx config with the candidate in place takes a private "
                                     f"mount namespace (run as root, as `apply` is): {' '.join(output.split())}")
        raise NginxFailure(output)
    ignored = [line for line in output.splitlines() if "[warn]" in line and IGNORED_BY_NGINX.search(line)]
    if ignored:
        hint = ("\nhint: two server blocks claim one host name. If one is the site's own, keep it: give the "
                "tenant `site: {mode: snippet}` and include the generated api/<slug>.conf in that block"
                if any("conflicting server name" in line for line in ignored) else "")
        raise NginxFailure("nginx -t passed, but nginx would ignore part of the config:\n" + "\n".join(ignored)
                           + hint)
    return result.stdout if dump else ""


# In a private mount namespace (nothing outside it changes), the candidate is bind-mounted over the
# live release, then nginx runs there: it reads the candidate wherever the config names DIR.
_MOUNT_FAILED: Final = 97
_MOUNTED: Final = f'mount --bind "$1" "$2" || exit {_MOUNT_FAILED}; shift 2; exec "$@"'


def in_place_available() -> bool:
    """Whether nginx can be run with a candidate bind-mounted at DIR (root, and util-linux's unshare)."""
    return os.geteuid() == 0 and shutil.which("unshare") is not None


def _with_candidate_at(directory: Path, candidate: Path) -> list[str]:
    if not directory.exists():
        raise NginxFailure(f"{directory} does not exist, so the main nginx config cannot be including it yet: "
                           "check without --dir, or apply")
    unshare = shutil.which("unshare")
    if unshare is None:
        raise EnvironmentProblem("unshare is not installed (util-linux): it is needed to test the main nginx "
                                 "config with the candidate in place")
    return [unshare, "--mount", "--propagation", "private", "sh", "-c", _MOUNTED, "sh", str(candidate),
            str(directory.resolve())]


@dataclass(frozen=True)
class MainConfigTest:
    tested: str  # what nginx -t passed on, for a report
    dump: str  # `nginx -T`'s answer: every file nginx read (where the master's pid file is named)


def judge_main_config(main_config: Path | None, directory: Path, candidate: Path | None = None) -> MainConfigTest:
    """`nginx -T` on the config nginx runs with (None: nginx's own default), which must read
    DIR/http.conf. With `candidate` (files rendered for DIR, not yet in place) nginx judges exactly
    what it would see after `apply`'s swap: the candidate stands at DIR, ops' own server blocks next
    to it."""
    args = ["-q", "-c", str(main_config)] if main_config is not None else ["-q"]
    within = _with_candidate_at(directory, candidate) if candidate is not None else []
    dump = run_nginx_test(args, dump=True, within=within)
    read = list(files_read(dump))
    live = os.path.realpath(directory)
    if not any(Path(path).name == "http.conf" and os.path.realpath(Path(path).parent) == live for path in read):
        raise NginxFailure(f"{main_config or 'the default nginx config'} does not include {directory}/http.conf, so "
                           f"nginx would never read the generated files: add `include {directory}/http.conf;` to "
                           "its http block")
    if taken := address_listens(dump, str(directory)):
        raise NginxFailure("\n".join(taken))
    what = str(main_config or "the default nginx config")
    return MainConfigTest(f"{what} with the candidate at {directory}" if candidate is not None else what, dump)



def check_main_config(main_config: Path | None, directory: Path, candidate: Path | None = None) -> str:
    """`judge_main_config`, returning what was tested (for a report)."""
    return judge_main_config(main_config, directory, candidate).tested


def _snippet_servers(rendering: Rendering, config: RoutingConfig, include_dir: Path) -> str:
    """A server per snippet-mode tenant around its API include: nothing else includes it here."""
    port = config.nginx.listen_ports[0]
    return "".join(f"    server {{ listen {port}; server_name {slug}.dualstack-check.invalid; "
                   f"include {include_dir}/api/{slug}.conf; }}\n"
                   for slug in sorted(config.tenants) if config.site_of(slug).mode == "snippet"
                   and f"api/{slug}.conf" in rendering.files)


def check_snippets(config: RoutingConfig, rendering: Rendering, include_dir: Path, within: Sequence[str] = ()) -> int:
    """`nginx -t` on each snippet-mode tenant's API include (which ops' server blocks may not include
    yet) inside a server block, `rendering` standing at `include_dir` (inside `within`): a wrapper
    config holding http.conf without the generated server blocks, which another run tests. Returns
    how many were tested (none: nginx is not run)."""
    servers = _snippet_servers(rendering, config, include_dir)
    if not servers:
        return 0
    tenants_line = f"include {include_dir}/tenants/*.conf;\n"
    if tenants_line not in rendering.files["http.conf"]:
        raise NginxFailure(f"http.conf does not hold `{tenants_line.strip()}`: the templates and the check disagree")
    with tempfile.TemporaryDirectory(prefix="dualstack-nginx-check-") as tmp:
        prefix = Path(tmp)
        (prefix / "temp").mkdir()
        (prefix / "http-without-servers.conf").write_text(rendering.files["http.conf"].replace(tenants_line, ""))
        (prefix / "nginx.conf").write_text(wrapper_config(prefix, prefix, servers, include="http-without-servers.conf"))
        run_nginx_test(["-q", "-p", str(prefix), "-c", str(prefix / "nginx.conf")], within=within)
    return servers.count("server {")


def check_snippets_in_place(config: RoutingConfig, rendering: Rendering, directory: Path, release: Path) -> int:
    """`check_snippets` with `release` (where `rendering`, made for DIR, is written) standing at DIR."""
    return check_snippets(config, rendering, directory, within=_with_candidate_at(directory, release))


def memory_folder(needed_bytes: int) -> str | None:
    """/dev/shm (memory) when it has room to spare for `needed_bytes`, else None (the default temporary
    folder): a copy of thousands of small files is written there in a fraction of the time."""
    try:
        room = os.statvfs("/dev/shm")
    except OSError:
        return None
    spare = room.f_bavail * room.f_frsize > 4 * needed_bytes + (64 << 20)
    return "/dev/shm" if spare and os.access("/dev/shm", os.W_OK | os.X_OK) else None


@dataclass
class CheckReport:
    rendering: Rendering
    tested: list[str]  # what nginx -t passed on


def check(config: RoutingConfig, *, directory: Path | None = None, main_config: Path | None = None) -> CheckReport:
    """Render into a temporary prefix and run the real `nginx -t` on a wrapper around it; with
    `directory` (the DIR `apply` takes), also on the main config with the candidate in place of
    DIR, as `apply` does: only there does nginx see ops' own server blocks."""
    with tempfile.TemporaryDirectory(prefix="dualstack-nginx-check-", dir=memory_folder(rendered_size(config))) as tmp:
        prefix = Path(tmp)
        folders = [prefix / "dualstack"] + ([directory.absolute()] if directory is not None else [])
        renderings = render_in(config, folders)
        report = check_alone(config, renderings[0], prefix)
        if directory is not None:
            candidate = prefix / "candidate"
            renderings[1].write(candidate)  # byte for byte what `apply` would put at DIR
            report.tested.append(check_main_config(main_config, directory.absolute(), candidate))
        return report


def check_alone(config: RoutingConfig, rendering: Rendering, prefix: Path) -> CheckReport:
    """`nginx -t` on a wrapper config in the empty folder `prefix` around `rendering`, which was
    rendered for PREFIX/dualstack."""
    include_dir = prefix / "dualstack"
    rendering.write(include_dir)
    (prefix / "temp").mkdir()
    (prefix / "nginx.conf").write_text(wrapper_config(prefix, include_dir))
    with ThreadPoolExecutor(max_workers=1) as beside:  # two nginx processes, each parsing its own share
        snippets = beside.submit(check_snippets, config, rendering, include_dir)
        try:
            run_nginx_test(["-q", "-p", str(prefix), "-c", str(prefix / "nginx.conf")])
        finally:
            snippets.exception()  # this run's failure first; both runs over either way
        snippets.result()
    return CheckReport(rendering, ["the rendered files on their own"])


def rendered_size(config: RoutingConfig) -> int:
    """A generous estimate of the rendered files' size: about 3 KB per tenant at most."""
    return 64_000 + 4_000 * len(config.tenants)
