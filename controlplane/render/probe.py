"""Probes around `nginx apply`: each tenant's site (and API) must answer after the reload as before.

nginx can accept a config, reload, answer the new version and still have stopped serving a site
(a generated server block that took a host from the one ops run). So before the swap `apply` asks
every tenant host, `<slug>.<base_domain>` and each alias in the tenant's `hosts`, for its site's
probe path (`site.probe`, default /), and for /health when that is an API path (a host whose
generated server block goes away, with no server block of ops' own taking its API, loses the
payment service). After the reload it asks again for every path that answered (2xx or 3xx): one
that now answers in another class, or not at all, fails the apply. One that did not answer before
(a new tenant, a site already broken) constrains nothing.

Bounded for thousands of tenants: at most MAX_PROBED_HOSTS hosts, PROBE_CONCURRENCY requests at a
time, each PROBE_TIMEOUT_S, and a round stops starting requests after ROUND_BUDGET_S. With more
hosts than that, those of the tenants whose generated files this apply changes come first, then a
sample of the rest drawn from the new version (reproducible, and another sample at each version).
A path not asked before the apply constrains nothing; one that answered before and is not asked
after it (the budget ran out) fails the apply: no answer is never a pass.
"""

from __future__ import annotations

import http.client
import random
import ssl
import time
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from controlplane.config.model import RoutingConfig

PROBE_CONCURRENCY: Final = 8
PROBE_TIMEOUT_S: Final = 5.0
ROUND_BUDGET_S: Final = 30.0  # a round ends within this plus one PROBE_TIMEOUT_S
MAX_PROBED_HOSTS: Final = 400
API_PROBE_PATH: Final = "/health"


@dataclass(frozen=True, slots=True)
class Probe:
    host: str  # the Host header: the tenant's <slug>.<base_domain>, or one of its `hosts`
    path: str

    def __str__(self) -> str:
        return f"{self.host}{self.path}"


@dataclass(frozen=True, slots=True)
class ProbePlan:
    probes: list[Probe]
    hosts: int  # how many hosts the probes ask
    of_hosts: int  # how many tenant hosts the config declares

    def describe(self) -> str:
        sampled = f" (a sample of {self.hosts} of {self.of_hosts} hosts)" if self.hosts < self.of_hosts else ""
        return f"{len(self.probes)} probe(s) of tenant sites and APIs{sampled}"


def site_probes(config: RoutingConfig, *, first: Collection[str] = (), seed: str = "",
                max_hosts: int = MAX_PROBED_HOSTS) -> ProbePlan:
    """The probes of every tenant host, or of `max_hosts` of them: all hosts of the `first` tenants
    (those this apply changes) before a sample, drawn with `seed`, of the others."""
    hosts = [(slug, host) for slug in sorted(config.tenants)
             for host in dict.fromkeys([f"{slug}.{config.base_domain}", *config.tenants[slug].hosts])]
    chosen = hosts
    if len(hosts) > max_hosts:
        rng = random.Random(seed)
        urgent = [entry for entry in hosts if entry[0] in first]
        rest = [entry for entry in hosts if entry[0] not in first]
        picked = rng.sample(urgent, max_hosts) if len(urgent) > max_hosts else \
            urgent + rng.sample(rest, max_hosts - len(urgent))
        keep = set(picked)
        chosen = [entry for entry in hosts if entry in keep]
    api = API_PROBE_PATH in config.nginx.api_paths
    probes = []
    for slug, host in chosen:
        site = config.site_of(slug).probe
        probes.append(Probe(host, site))
        if api and site != API_PROBE_PATH:
            probes.append(Probe(host, API_PROBE_PATH))
    return ProbePlan(probes, len(chosen), len(hosts))


def _status(base_url: str, probe: Probe, timeout_s: float) -> int | None:
    """The status nginx answers, redirects not followed (a redirect is an answer); None if none."""
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        # nginx on this host, reached by address: its certificate names the tenants, not the address.
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        connection = http.client.HTTPSConnection(host, port, timeout=timeout_s, context=context)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        connection.request("GET", probe.path, headers={"Host": probe.host, "User-Agent": "dualstack-apply-probe"})
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def run_probes(base_url: str, probes: Sequence[Probe], timeout_s: float = PROBE_TIMEOUT_S,
               budget_s: float = ROUND_BUDGET_S) -> dict[Probe, int | None]:
    """Ask nginx at `base_url` (scheme://host:port) for the probes, a few at a time; a probe not
    started within `budget_s` is left out of the answer."""
    if not probes:
        return {}
    deadline = time.monotonic() + budget_s

    def ask(probe: Probe) -> tuple[Probe, int | None] | None:
        return (probe, _status(base_url, probe, timeout_s)) if time.monotonic() < deadline else None

    with ThreadPoolExecutor(max_workers=min(PROBE_CONCURRENCY, len(probes)),
                            thread_name_prefix="dualstack-probe") as pool:
        return dict(answer for answer in pool.map(ask, probes) if answer is not None)


def answered(status: int | None) -> bool:
    return status is not None and 200 <= status < 400


def to_ask_again(before: Mapping[Probe, int | None]) -> list[Probe]:
    """After the reload, only the paths that answered before can fail the apply."""
    return [probe for probe, status in before.items() if answered(status)]


def regressions(before: Mapping[Probe, int | None], after: Mapping[Probe, int | None]) -> list[str]:
    """Every path that answered before and no longer answers the same way, said in one line each."""
    out = []
    for probe in to_ask_again(before):
        was = before[probe] or 0
        if probe not in after:
            out.append(f"probe {probe}: answered {was} before the apply, and was not asked after it (the "
                       f"{ROUND_BUDGET_S:.0f} s probe budget ran out)")
        elif (now := after[probe]) is None or now // 100 != was // 100:
            out.append(f"probe {probe}: answered {was} before the apply, "
                       + (f"{now} after it" if now is not None else "nothing after it"))
    return out
