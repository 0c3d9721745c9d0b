"""Reloading nginx by a signal to the master its main config names, and the snippet-mode API includes
tested in place before anything changes: with the real nginx, no nginx process needed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from controlplane.config import RoutingConfig, load_config_text
from controlplane.render.apply import apply
from controlplane.render.nginx import render
from controlplane.render.nginx_check import NginxFailure, check, in_place_available, wrapper_config
from controlplane.render.nginx_reload import pid_file_in, pid_file_of, signal_master
from tests.conftest import free_port

needs_nginx = pytest.mark.skipif(not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")),
                                 reason="nginx is not installed")

DUMP = textwrap.dedent("""\
    nginx: the configuration file /etc/nginx/nginx.conf syntax is ok
    # configuration file /etc/nginx/nginx.conf:
    # pid /commented/out.pid;
    user www-data;
    http {
        map $host $pid_of_host {
            pid /in/a/map.pid;
        }
        include /etc/nginx/dualstack/http.conf;
    }
    pid  "/run/quoted nginx.pid" ;

    # configuration file /etc/nginx/dualstack/http.conf:
    pid /in/an/include.pid;
    """)


def test_the_pid_file_is_the_main_configs_top_level_pid_directive() -> None:
    assert pid_file_in(DUMP) == "/run/quoted nginx.pid"
    # only in a block, a comment or another file: nginx's own default applies
    without = DUMP.replace('pid  "/run/quoted nginx.pid" ;\n', "")
    assert pid_file_in(without) is None
    assert pid_file_in("") is None and pid_file_in("garbage\n{{{ pid x;") is None


@needs_nginx
def test_a_relative_or_missing_pid_file_is_where_nginx_itself_would_look() -> None:
    built = subprocess.run([shutil.which("nginx") or "/usr/sbin/nginx", "-V"], capture_output=True, text=True,
                           check=True, timeout=30).stderr
    prefix = next((part.split("=", 1)[1] for part in built.split() if part.startswith("--prefix=")), "/usr/local/nginx")
    relative = DUMP.replace('"/run/quoted nginx.pid"', "logs/other.pid")
    assert pid_file_of(relative) == Path(prefix) / "logs/other.pid"
    compiled = next((part.split("=", 1)[1] for part in built.split() if part.startswith("--pid-path=")), None)
    if compiled is not None and compiled.startswith("/"):
        assert pid_file_of(DUMP.replace('pid  "/run/quoted nginx.pid" ;\n', "")) == Path(compiled)


@pytest.mark.parametrize("content", ["", "abc", "-5", "1", "12 13", "9" * 400, "\x00\x01"])
def test_a_pid_file_that_holds_no_process_id_is_refused(tmp_path: Path, content: str) -> None:
    pid_file = tmp_path / "nginx.pid"
    pid_file.write_text(content)
    with pytest.raises(NginxFailure, match=r"not a process id|is empty") as info:
        signal_master(pid_file)
    assert "--reload-command" in str(info.value) and len(str(info.value)) < 400  # bounded, says the fix


def test_a_stale_pid_file_never_signals_another_process(tmp_path: Path) -> None:
    pid_file = tmp_path / "nginx.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # this test's own process: a SIGHUP would end it
    with pytest.raises(NginxFailure, match=rf"process {os.getpid()} .* is not an nginx master .*stale"):
        signal_master(pid_file)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=30)
    pid_file.write_text(f"{gone.pid}\n")
    with pytest.raises(NginxFailure, match=rf"no process {gone.pid} "):
        signal_master(pid_file)
    with pytest.raises(NginxFailure, match=r"cannot read nginx's pid file .*No such file"):
        signal_master(tmp_path / "missing.pid")


def _snippet_only(port: int, access_log: str) -> RoutingConfig:
    """Every tenant in site mode snippet, no default server, no platform host: only the API includes
    name the access log, and the main config reads none of them (ops have not included any yet)."""
    return load_config_text(textwrap.dedent(f"""\
        upstreams: {{v1: {{url: "http://127.0.0.1:3002", tenants: [alpha]}}, v2: {{url: "http://127.0.0.1:3010"}}}}
        base_domain: agentbar.ai
        nginx: {{listen_ports: [{port}], access_log: {access_log}, default_server: false}}
        tenants:
          alpha: {{backend: v1}}
          beta: {{backend: v2}}
        """), "routing.yaml")


@needs_nginx
def test_a_snippet_include_nginx_refuses_stops_the_apply_before_anything_changes(tmp_path: Path) -> None:
    if not in_place_available():
        pytest.skip("no private mount namespaces here (root and util-linux unshare)")
    port = free_port()  # nothing listens: the failures come before any reload
    (tmp_path / "temp").mkdir()
    live, conf = tmp_path / "dualstack", tmp_path / "nginx.conf"
    render(_snippet_only(port, f"{tmp_path}/access.log"), live).write(live)
    conf.write_text(wrapper_config(tmp_path, live))
    refused = _snippet_only(port, "/nonexistent-dualstack/access.log")
    with pytest.raises(NginxFailure) as info:
        check(refused)  # on their own too
    assert "/nonexistent-dualstack/access.log" in str(info.value)
    with pytest.raises(NginxFailure) as info:
        apply(refused, live, reload_command=None, main_config=conf, verify_timeout_s=1.0)
    message = str(info.value)
    assert 'open() "/nonexistent-dualstack/access.log" failed' in message  # nginx's own words
    kept = live.resolve()
    assert f"nothing changed: {live} still points at {kept.name}" in message
    assert kept.name.startswith("manual-")  # the folder ops wrote, kept as it was
    assert (kept / "http.conf").read_text() == render(_snippet_only(port, f"{tmp_path}/access.log"),
                                                      live).files["http.conf"]


@needs_nginx
def test_a_reload_by_signal_with_no_nginx_running_restores_and_says_why(tmp_path: Path) -> None:
    if not in_place_available():
        pytest.skip("no private mount namespaces here (root and util-linux unshare)")
    port = free_port()
    (tmp_path / "temp").mkdir()
    live, conf = tmp_path / "dualstack", tmp_path / "nginx.conf"
    good = _snippet_only(port, f"{tmp_path}/access.log")
    render(good, live).write(live)
    conf.write_text(wrapper_config(tmp_path, live))
    with pytest.raises(NginxFailure) as info:
        apply(_flipped(port, tmp_path), live, reload_command=None, main_config=conf, verify_timeout_s=1.0)
    message = str(info.value)
    # the main config's pid directive; `nginx -t` makes the file, empty, when no master runs
    assert f"nginx's pid file {tmp_path}/nginx.pid is empty: no nginx master runs with this config" in message
    assert "start nginx, or pass --reload-command" in message
    assert f"nginx -t passed on {conf} with the candidate at {live} and on 2 snippet-mode API include(s)" in message
    assert "restored manual-" in message and live.resolve().name.startswith("manual-")


def _flipped(port: int, tmp_path: Path) -> RoutingConfig:
    return load_config_text(textwrap.dedent(f"""\
        upstreams: {{v1: {{url: "http://127.0.0.1:3002", tenants: [alpha, beta]}}, v2: {{url: "http://127.0.0.1:3010"}}}}
        base_domain: agentbar.ai
        nginx: {{listen_ports: [{port}], access_log: {tmp_path}/access.log, default_server: false}}
        tenants:
          alpha: {{backend: v1}}
          beta: {{backend: v1}}
        """), "routing.yaml")
