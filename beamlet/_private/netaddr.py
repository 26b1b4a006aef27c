"""Network addresses: parsing HOST:PORT, this machine's own addresses, busy ports.

Facts about the network, no beamlet state: node.py decides what an address
means for a cluster (a local node of it, a remote head, nothing).
"""
import ipaddress
import socket


def parse_host_port(text, what="address"):
    """(host, port) from "HOST:PORT" ("[v6]:PORT" for IPv6); ValueError naming
    `what` and the text otherwise."""
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a string 'HOST:PORT', got {type(text).__name__} "
                        f"{text!r}.")
    if "://" in text:
        raise ValueError(f"{what} {text!r}: beamlet has no client protocol (such as "
                         f"Ray's ray://); give the GCS address as HOST:PORT, as printed "
                         f"by `beamlet start --head`.")
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} must be 'HOST:PORT' (a port from 1 to 65535) or "
                         f"'auto', got {text!r}.")
    return host, int(port)


def _plain(ip: str) -> str:
    return ip.split("%", 1)[0]   # fe80::1%eth0: the scope is not part of the address


def local_ips() -> set:
    """Every address of this machine's interfaces (v4 and v6)."""
    import psutil
    out = set()
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                out.add(_plain(a.address))
    return out


def resolve(host: str) -> set:
    """The IP addresses `host` (a name or an address) stands for; ValueError if it
    cannot be resolved."""
    try:
        return {_plain(ai[4][0]) for ai in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError) as e:
        raise ValueError(f"the host name {host!r} cannot be resolved ({e}).") from None


def _is_own(ip: str, own: set) -> bool:
    try:
        if ipaddress.ip_address(ip).is_loopback:
            return True   # all of 127.0.0.0/8 reaches this machine
    except ValueError:
        return False
    return ip in own


def is_this_machine(host: str) -> bool:
    """Whether `host` names this machine (any of its addresses, loopback included)."""
    try:
        ips = resolve(host)
    except ValueError:
        return False
    own = local_ips()
    return bool(ips) and all(_is_own(ip, own) for ip in ips)


def check_node_ip(ip: str, flag="node_ip_address") -> str:
    """`ip` if it is one of this machine's addresses, else ValueError saying so."""
    if not isinstance(ip, str) or not ip:
        raise ValueError(f"{flag} must be an IP address of this machine, got {ip!r}.")
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        raise ValueError(f"{flag} {ip!r} is not an IP address; give one of this "
                         f"machine's addresses: {', '.join(sorted(local_ips()))}.") from None
    if addr.is_unspecified:
        raise ValueError(f"{flag} {ip}: give the address other nodes reach this one at "
                         f"(one of {', '.join(sorted(local_ips()))}), not the wildcard.")
    if not _is_own(ip, local_ips()):
        raise ValueError(f"{flag} {ip} is not an address of this machine; its "
                         f"addresses are {', '.join(sorted(local_ips()))}.")
    return ip


def port_holder(host: str, port: int):
    """None if `port` is free on `host`, else a description of who listens there.

    Binds the port the way redis-server does (SO_REUSEADDR: a port left in
    TIME_WAIT is free), so a listener on the same address or on the wildcard
    is seen."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return None
    except OSError as e:
        who = _listener(port)
        return who or e.strerror or str(e)
    finally:
        s.close()


def _listener(port: int):
    """'redis-server (pid 1234)' for the process listening on `port`, when this
    user may see it."""
    import psutil
    try:
        conns = psutil.net_connections("tcp")
    except (psutil.Error, OSError):
        return None
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            try:
                return f"{psutil.Process(c.pid).name()} (pid {c.pid})"
            except psutil.Error:
                return f"pid {c.pid}"
    return None


def probe_redis(host: str, port: int, timeout: float) -> None:
    """Return if a Redis server answers at host:port (whatever its password);
    ConnectionError saying what was found otherwise."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"PING\r\n")
            reply = s.recv(64)
    except socket.timeout:
        raise ConnectionError(f"nothing answered at {host}:{port} within {timeout:g} s "
                              f"(a firewall, or a wrong address)") from None
    except OSError as e:
        raise ConnectionError(f"cannot connect to {host}:{port} "
                              f"({e.strerror or e})") from None
    # +PONG without a password, -NOAUTH with one: either way a Redis server
    if not (reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH")
            or reply.startswith(b"-ERR")):
        raise ConnectionError(f"something other than a beamlet GCS (Redis) listens at "
                              f"{host}:{port} (it answered {reply[:20]!r})")


def check_listen_host(host, flag) -> str:
    """`host` if a server of this machine can listen there: one of its addresses,
    a name for one ("localhost"), or the wildcard (0.0.0.0 / ::: every
    interface); else ValueError naming `flag`."""
    if not isinstance(host, str) or not host:
        raise ValueError(f"{flag} must be an address of this machine (or 0.0.0.0 for "
                         f"every interface), got {host!r}.")
    try:
        if ipaddress.ip_address(host).is_unspecified:
            return host
    except ValueError:
        pass
    if not is_this_machine(host):
        raise ValueError(f"{flag} {host!r} is not an address of this machine; give one "
                         f"of {', '.join(sorted(local_ips()))}, or 0.0.0.0 for every "
                         f"interface.")
    return host


def check_port(port, flag) -> int:
    """`port` if it is a TCP port number (0: any free port); else ValueError."""
    if type(port) is not int or not 0 <= port < 65536:
        raise ValueError(f"{flag} must be a port number from 1 to 65535 (0: any free "
                         f"port), got {port!r}.")
    return port
