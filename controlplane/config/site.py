"""Where each tenant's site lives, and which paths are the API's: `nginx.api_paths`, `nginx.site`
and a tenant's own `site`.

A tenant host carries two things: the payment API (the paths in `nginx.api_paths`, sent to the
router or the tenant's backend) and the tenant's own funnel site (everything else). The site is
never guessed: without a declaration it stays in the server block ops already run (mode snippet).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Final, cast

from controlplane.config.collector import Collector, Path_, check_url
from controlplane.config.model import SITE_MODES, SiteMode, SiteSpec, TenantSpec

SITE_KEYS: Final = {"mode", "root", "url", "probe"}

# URL paths as nginx locations take them unquoted: segments of unreserved characters, no '//'.
_URL_PATH_RE: Final = re.compile(r"/(?:[A-Za-z0-9._~-]+/?)*")
# A folder on the nginx host; `{slug}` is replaced by each tenant's slug.
_ROOT_RE: Final = re.compile(r"/(?:[A-Za-z0-9._-]+/?)*")
# Every generated server answers its version here (controlplane.render.nginx.VERSION_PATH).
RESERVED_PREFIX: Final = "/__dualstack/"


def url_path(c: Collector, value: Any, path: Path_) -> str | None:
    text = c.string(value, path)
    if text is None:
        return None
    if not _URL_PATH_RE.fullmatch(text) or any(part in (".", "..") for part in text.split("/")):
        c.add(path, f"'{text}' must be a URL path such as /orders/ (letters, digits, '.', '_', '~', '-' and "
                    "'/'; no '..', '//', query or spaces)")
        return None
    return text


def _covers(outer: str, inner: str) -> bool:
    """`/orders/` covers everything under it; `/health` only itself."""
    return inner.startswith(outer) if outer.endswith("/") else inner == outer


def api_paths(c: Collector, raw: Any, path: Path_) -> tuple[str, ...] | None:
    """`nginx.api_paths`: what the payment service answers; every other path is the site's."""
    items = c.string_list(raw, path)
    if isinstance(raw, list) and not raw:
        c.add(path, "must list at least one path (the payment service's)")
        return None
    kept: list[tuple[Path_, str]] = []
    for item_path, value in items:
        text = url_path(c, value, item_path)
        if text is None:
            continue
        if text == "/":
            c.add(item_path, "'/' is the site's: list the paths the payment service answers, such as /orders/")
            continue
        if _covers(RESERVED_PREFIX, text) or _covers(text, RESERVED_PREFIX):
            c.add(item_path, f"'{text}' overlaps {RESERVED_PREFIX}, where nginx answers dualstack's own checks")
            continue
        other = next(((p, t) for p, t in kept if _covers(t, text) or _covers(text, t)), None)
        if other is not None:
            c.add(item_path, f"'{text}' overlaps '{other[1]}' (line {c.doc.line_of(other[0])}): list each path once")
            continue
        kept.append((item_path, text))
    if len(kept) != len(items) or not isinstance(raw, list):
        return None
    return tuple(text for _, text in kept)


def _root(c: Collector, value: Any, path: Path_) -> str | None:
    text = c.string(value, path)
    if text is None:
        return None
    bare = text.replace("{slug}", "slug")
    if not _ROOT_RE.fullmatch(bare) or any(part in (".", "..") for part in bare.split("/")):
        c.add(path, f"'{text}' must be an absolute folder of letters, digits, '.', '_', '-' and '/' "
                    "({slug} stands for the tenant's slug)")
        return None
    return text.rstrip("/") or "/"


def site_spec(c: Collector, raw: Any, path: Path_) -> SiteSpec | None:
    """One `site:` mapping: `{mode: snippet}`, `{mode: static, root: DIR}` or `{mode: upstream, url: URL}`,
    each with an optional `probe` path (default /)."""
    if not c.mapping(raw, path, SITE_KEYS, {"mode"}) or "mode" not in raw:
        return None
    mode = raw["mode"]
    if mode not in SITE_MODES:
        c.add((*path, "mode"), f"unknown site mode '{mode}' (expected one of: {', '.join(SITE_MODES)})")
        return None
    needs = {"static": "root", "upstream": "url"}
    for key, owner in (("root", "static"), ("url", "upstream")):
        if key in raw and mode != owner:
            c.add((*path, key), f"{key} belongs to mode {owner}, not {mode}")
    if mode in needs and needs[mode] not in raw:
        what = "the folder its index.html is in" if mode == "static" else "the server that serves the site"
        c.add(path, f"mode {mode} needs {needs[mode]}: {what}")
        return None
    root = _root(c, raw["root"], (*path, "root")) if mode == "static" else None
    url = None
    if mode == "upstream" and (text := c.string(raw["url"], (*path, "url"))) is not None:
        url = check_url(c, text, (*path, "url"))
    probe = url_path(c, raw["probe"], (*path, "probe")) if "probe" in raw else "/"
    if probe is None or (mode == "static" and root is None) or (mode == "upstream" and url is None):
        return None
    return SiteSpec(mode=cast(SiteMode, mode), root=root, url=url, probe=probe)


def tenant_sites(c: Collector, raw: Any, tenants: dict[str, TenantSpec]) -> dict[str, TenantSpec]:
    """Each tenant's own `site:` (checked for every entry, so that one pass reports every problem)."""
    if not isinstance(raw, dict):
        return tenants
    out = dict(tenants)
    for slug, entry in raw.items():
        if not isinstance(entry, dict) or "site" not in entry:
            continue
        site = site_spec(c, entry["site"], ("tenants", slug, "site"))
        if site is not None and slug in out:
            out[slug] = dataclasses.replace(out[slug], site=site)
    return out
