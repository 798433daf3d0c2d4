"""Host names and addresses: which ones are this machine's own."""

from __future__ import annotations

import ipaddress


def loopback(name: str) -> bool:
    """Whether a host name or address is the machine's own loopback: localhost, a name under
    .localhost (RFC 6761: never resolved elsewhere), 127.x.x.x, ::1, or 127.x.x.x mapped into IPv6
    (::ffff:127.0.0.1, which `is_loopback` leaves out before Python 3.13)."""
    name = name.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)
