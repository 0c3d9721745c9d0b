"""nginx includes generated from the routing config: a view-model, jinja2 templates, a version.

Output is deterministic: the same config and include directory give byte-identical files, so a
diff in git shows exactly what changes. The version is a hash of the generated files; every
server answers it at VERSION_PATH, which is how `apply` proves a reload took effect.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import jinja2

from controlplane.config.model import BACKENDS, RoutingConfig

TEMPLATES: Final = Path(__file__).resolve().parents[2] / "templates" / "nginx"
VERSION_PATH: Final = "/__dualstack/version"


class RenderError(Exception):
    """The config cannot be expressed as nginx includes; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Rendering:
    files: dict[str, str]  # relative path -> content
    version: str

    def write(self, directory: Path) -> None:
        for relative, content in self.files.items():
            target = directory / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)

    def diff(self, directory: Path) -> str:
        """A unified diff from what is in `directory` to this rendering ('' when identical)."""
        existing = {str(p.relative_to(directory)): p.read_text() for p in sorted(directory.rglob("*.conf"))} \
            if directory.is_dir() else {}
        out: list[str] = []
        for relative in sorted(existing.keys() | self.files.keys()):
            before, after = existing.get(relative, ""), self.files.get(relative, "")
            if before != after:
                out.extend(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                                f"a/{relative}", f"b/{relative}"))
        return "".join(out)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                              autoescape=False)


def _address(name: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise RenderError(f"{name} is {url}: the generated nginx includes proxy to http:// addresses only")
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{parts.port or 80}"


def view_model(config: RoutingConfig, include_dir: str) -> dict[str, Any]:
    """Everything the templates show, prepared here so that they stay logic-free loops."""
    nginx = config.nginx
    router = _address("nginx.router_url", nginx.router_url)
    backend = {b: _address(f"upstreams.{b}.url", config.upstreams[b].url) for b in BACKENDS}
    upstreams = [{"name": "dualstack_router", "comment": "the router only (payment notifications)",
                  "servers": [router]}]
    for b in BACKENDS:
        upstreams.append({"name": f"dualstack_router_then_{b}",
                          "comment": f"the router; {b} directly if the router is down",
                          "servers": [f"{router} max_fails=1 fail_timeout=5s", f"{backend[b]} backup"]})
    for b in BACKENDS:
        upstreams.append({"name": f"dualstack_{b}", "comment": f"{b} directly", "servers": [backend[b]]})
    tenants = []
    for slug in sorted(config.tenants):
        tenant = config.tenants[slug]
        via_router = tenant.via == "router"
        tenants.append({
            "slug": slug,
            "backend": tenant.backend,
            "server_names": list(dict.fromkeys([f"{slug}.{config.base_domain}", *tenant.hosts])),
            "upstream": f"dualstack_router_then_{tenant.backend}" if via_router else f"dualstack_{tenant.backend}",
            "webhook_upstream": "dualstack_router" if via_router else f"dualstack_{tenant.backend}",
            "path_description": (f"through the router (falls back to {tenant.backend} directly if the router "
                                 "is down)") if via_router else "directly, not through the router",
        })
    return {
        "include_dir": include_dir.rstrip("/"),
        "upstreams": upstreams,
        "keepalive": nginx.keepalive,
        "listen_ports": list(nginx.listen_ports),
        "tls": nginx.tls,
        "access_log": nginx.access_log,
        "default_server": nginx.default_server,
        "platform_hosts": [f"{label}.{config.base_domain}" for label in sorted(config.platform_subdomains)],
        "version_path": VERSION_PATH,
        "tenants": tenants,
    }


def _with_header(source: str, body: str) -> str:
    """Each file names its source and the hash of its own content, so a file changes (and shows in
    a diff) only when what it says changes."""
    digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    return (f"# Generated by dualstack from {source}: do not edit; change the routing file and run\n"
            f"# `dualstack nginx apply`. Content sha256 {digest}.\n{body}")


def render(config: RoutingConfig, include_dir: str | Path) -> Rendering:
    env = _environment()
    model = view_model(config, str(include_dir))
    source = Path(config.source).name
    bodies = {
        "http.conf": env.get_template("http.conf.j2").render(model),
        "proxy.conf": env.get_template("proxy.conf.j2").render(model),
        "default.conf": env.get_template("default.conf.j2").render(model),
    }
    tenant_template = env.get_template("tenant.conf.j2")
    for tenant in model["tenants"]:
        bodies[f"tenants/{tenant['slug']}.conf"] = tenant_template.render({**model, "tenant": tenant})
    files = {name: _with_header(source, body) for name, body in bodies.items()}
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    version = digest.hexdigest()[:16]
    files["version.conf"] = _with_header(source, env.get_template("version.conf.j2").render(
        {**model, "version": version}))
    return Rendering(dict(sorted(files.items())), version)
