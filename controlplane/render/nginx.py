"""nginx includes generated from the routing config: a view-model, jinja2 templates, a version.

The generated files own a tenant host's API only (`nginx.api_paths`, in `api/<slug>.conf`); the rest
of the host is the tenant's site, served as ops declare (`site:`): from a folder, from the site's own
server, or by the server block ops keep themselves, which includes `api/<slug>.conf` (the default:
no generated server block can then shadow a site ops already run).

Output is deterministic: the same config and include directory give byte-identical files, so a
diff in git shows exactly what changes. The version is a hash of the generated files; every
server answers it at VERSION_PATH, which is how `apply` proves a reload took effect.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import Sequence
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
        """Each file written beside its place and renamed over it: a file `nginx apply` hard-linked
        between its releases is replaced, never changed in place (which would change the older
        releases a failed apply restores)."""
        if directory.is_symlink() and directory.resolve().parent.name.endswith(".releases"):
            raise RenderError(f"{directory} is applied by `dualstack nginx apply` (it links to "
                              f"{directory.resolve()}): writing into it would bypass nginx -t and the way back. "
                              "Use `dualstack nginx apply`, or `render --diff` to see the change")
        self.make_folders(directory)
        for relative, content in self.files.items():
            target = directory / relative
            partial = target.with_name(f".{target.name}.partial")
            partial.write_text(content)
            os.replace(partial, target)

    def make_folders(self, directory: Path) -> None:
        """Each folder the files go in, made once (not once per file: thousands of tenants)."""
        for folder in sorted({(directory / relative).parent for relative in self.files}):
            folder.mkdir(parents=True, exist_ok=True)

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


def _site_upstream(address: str) -> str:
    return "dualstack_site_" + re.sub(r"[^A-Za-z0-9]+", "_", address).strip("_")


def _api_locations(paths: tuple[str, ...], upstream: str, webhook_upstream: str) -> list[dict[str, Any]]:
    """One location per API path: `/orders/` everything under it, `/health` that path exactly. `^~`
    keeps regular-expression locations in ops' own server blocks from taking an API path."""
    out = []
    for path in paths:
        webhook = path.startswith("/webhooks/")
        out.append({"match": f"^~ {path}" if path.endswith("/") else f"= {path}", "webhook": webhook,
                    "upstream": webhook_upstream if webhook else upstream})
    return out


def _site(config: RoutingConfig, slug: str) -> dict[str, Any]:
    spec = config.site_of(slug)
    where = f"tenants.{slug}.site" if config.tenants[slug].site is not None else "nginx.site"
    address = _address(f"{where}.url", spec.url) if spec.url is not None else None
    return {"mode": spec.mode, "root": spec.root_of(slug), "address": address,
            "upstream": _site_upstream(address) if address is not None else None}


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
    sites: dict[str, str] = {}  # upstream name -> address
    for slug in sorted(config.tenants):
        tenant = config.tenants[slug]
        via_router = tenant.via == "router"
        upstream = f"dualstack_router_then_{tenant.backend}" if via_router else f"dualstack_{tenant.backend}"
        site = _site(config, slug)
        if site["upstream"] is not None:
            sites[site["upstream"]] = site["address"]
        tenants.append({
            "slug": slug,
            "backend": tenant.backend,
            "server_names": list(dict.fromkeys([f"{slug}.{config.base_domain}", *tenant.hosts])),
            "path_description": (f"through the router (falls back to {tenant.backend} directly if the router "
                                 "is down)") if via_router else ("directly, not through the router (payment "
                                                                 "notifications excepted)"),
            # Notifications always go through the router, `via: direct` or not: it verifies them before
            # any backend sees one, and v1 applies whatever it is sent.
            "api_locations": _api_locations(nginx.api_paths, upstream, "dualstack_router"),
            "site": site,
        })
    for name in sorted(sites):
        upstreams.append({"name": name, "comment": "a tenant site's own server (site mode upstream)",
                          "servers": [sites[name]]})
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


# Where the include folder goes in the rendered text: the templates are rendered once and the folder
# put in afterwards, for each folder a caller needs (apply: the live one and the one nginx -t reads).
_INCLUDE_DIR_MARK: Final = "\x00include_dir\x00"


def render(config: RoutingConfig, include_dir: str | Path) -> Rendering:
    return render_in(config, [include_dir])[0]


def render_in(config: RoutingConfig, include_dirs: Sequence[str | Path]) -> list[Rendering]:
    """The files for each include folder, from one rendering of the templates (most of the cost)."""
    env = _environment()
    model = view_model(config, _INCLUDE_DIR_MARK)
    if "\x00" in repr({key: value for key, value in model.items() if key != "include_dir"}):
        raise RenderError("the routing file holds a NUL character in a value nginx would be given: remove it")
    source = Path(config.source).name
    bodies = {
        "http.conf": env.get_template("http.conf.j2").render(model),
        "proxy.conf": env.get_template("proxy.conf.j2").render(model),
        "site-proxy.conf": env.get_template("site-proxy.conf.j2").render(model),
        "default.conf": env.get_template("default.conf.j2").render(model),
    }
    tenant_template, api_template = env.get_template("tenant.conf.j2"), env.get_template("api.conf.j2")
    for tenant in model["tenants"]:
        bodies[f"tenants/{tenant['slug']}.conf"] = tenant_template.render({**model, "tenant": tenant})
        bodies[f"api/{tenant['slug']}.conf"] = api_template.render({**model, "tenant": tenant})
    version_template = env.get_template("version.conf.j2")
    out = []
    for include_dir in include_dirs:
        folder = str(include_dir).rstrip("/")
        files = {name: _with_header(source, body.replace(_INCLUDE_DIR_MARK, folder)) for name, body in bodies.items()}
        digest = hashlib.sha256()
        for name in sorted(files):
            digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
        version = digest.hexdigest()[:16]
        files["version.conf"] = _with_header(source, version_template.render(
            {**model, "include_dir": folder, "version": version}))
        out.append(Rendering(dict(sorted(files.items())), version))
    return out
