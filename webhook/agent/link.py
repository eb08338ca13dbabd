"""The agent's link: a dummy interface (or, without that driver, a port-less bridge) holding
the link-local listen addresses.

Set up over netlink (pyroute2), which needs CAP_NET_ADMIN in the node's network namespace (the
DaemonSet runs on the host network with that one capability). Idempotent: an existing link or
address is kept, so a restarted agent finds its link as it left it. IPv6 addresses are added
without duplicate address detection, so they can be bound at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["LinkError", "LinkState", "ensure_link", "link_state"]

IFA_F_NODAD = 0x02
EEXIST, EOPNOTSUPP = 17, 95


class LinkError(Exception):
    """The link could not be set up; the message says which step and why."""


@dataclass(frozen=True, slots=True)
class LinkState:
    up: bool
    addresses: frozenset[str]


def ensure_link(name: str, addresses: Iterable[str]) -> None:
    """Create the dummy link `name` if needed, add each address, bring it up."""
    import ipaddress

    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    wanted = [ipaddress.ip_address(a) for a in addresses]
    with IPRoute() as ipr:
        try:
            found = ipr.link_lookup(ifname=name)
            if not found:
                try:
                    ipr.link("add", ifname=name, kind="dummy")
                except NetlinkError as exc:
                    if exc.code != EOPNOTSUPP:
                        raise
                    # A kernel without the dummy driver: a bridge without ports holds local
                    # addresses just as well (local delivery does not need a carrier).
                    ipr.link("add", ifname=name, kind="bridge")
                found = ipr.link_lookup(ifname=name)
            index = found[0]
            for address in wanted:
                prefix = 32 if address.version == 4 else 128
                extra = {} if address.version == 4 else {"flags": IFA_F_NODAD}
                try:
                    ipr.addr("add", index=index, address=str(address), prefixlen=prefix, **extra)
                except NetlinkError as exc:
                    if exc.code != EEXIST:
                        raise
            ipr.link("set", index=index, state="up")
        except NetlinkError as exc:
            hint = " (the agent needs CAP_NET_ADMIN)" if exc.code == 1 else ""
            raise LinkError(f"setting up link {name}: {exc}{hint}") from None


def link_state(name: str) -> LinkState | None:
    """Whether the link is up and which addresses it holds; None when it does not exist."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return None
        (link,) = ipr.get_links(found[0])
        up = link.get("state") == "up" or bool(link["flags"] & 1)
        addresses = frozenset(
            str(a.get("IFA_ADDRESS") or a.get_attr("IFA_ADDRESS"))
            for a in ipr.get_addr(index=found[0])
        )
        return LinkState(up, addresses)
