"""One gRPC target for a list of cores (``host:port,host:port``): the channel fails over by itself.

gRPC's ``pick_first`` policy tries a target's addresses in order and moves to the next when the one
it uses goes away, so a worker or a facade given several cores keeps working when one stops. Names
are resolved to their addresses once, here (gRPC's own resolvers take one name per target); TLS keeps
checking the certificate against the first name given.
"""

from __future__ import annotations

import ipaddress
import socket


def _split(entry: str) -> tuple[str, int]:
    host, sep, port = entry.strip().rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"not host:port: {entry!r}")
    return host.strip("[]"), int(port)


def grpc_target(cores: str) -> tuple[str, list[tuple[str, str]]]:
    """(target, extra channel options) for ``cores``: one ``host:port`` as it is; several as one
    ``ipv4:``/``ipv6:`` address list that fails over in order. ValueError for a malformed entry."""
    entries = [e for e in cores.split(",") if e.strip()]
    if not entries:
        raise ValueError("no core address")
    if len(entries) == 1:
        _split(entries[0])
        return entries[0].strip(), []
    addresses: list[tuple[int, str]] = []
    names: list[str] = []
    for entry in entries:
        host, port = _split(entry)
        try:
            ip = ipaddress.ip_address(host)
            found = [(ip.version, str(ip))]
        except ValueError:
            names.append(host)
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            found = [(4 if fam == socket.AF_INET else 6, str(addr[0])) for fam, _, _, _, addr in infos]
        for version, ip_text in found:
            item = f"{ip_text}:{port}" if version == 4 else f"[{ip_text}]:{port}"
            if (version, item) not in addresses:
                addresses.append((version, item))
    scheme = "ipv4" if all(v == 4 for v, _ in addresses) else "ipv6"
    if scheme == "ipv6":  # a mixed list: IPv4 addresses written as IPv4-mapped IPv6
        items = [
            a if v == 6 else f"[::ffff:{a.rsplit(':', 1)[0]}]:{a.rsplit(':', 1)[1]}" for v, a in addresses
        ]
    else:
        items = [a for _, a in addresses]
    options = [("grpc.lb_policy_name", "pick_first")]
    if names:
        options.append(("grpc.ssl_target_name_override", names[0]))
    return f"{scheme}:{','.join(items)}", options
