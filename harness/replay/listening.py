"""Where a launched handler listens, read from Linux's ``/proc``: the TCP sockets in the LISTEN state that the
process or any process below it holds. A ``--cmd`` that ignores ``{port}`` and listens on a port of its own is
then told so within a second, rather than after ``--ready-timeout`` with a guess about slow starts."""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.replay.reaper import descendants

LISTEN = "0A"  # the TCP state in /proc/net/tcp{,6}


@dataclass(frozen=True, order=True)
class Listening:
    """One listening TCP socket: its address as the kernel has it, and its port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def reaches(self, host: str) -> bool:
        """Would a connection to ``host`` (an address) on this port reach this socket?"""
        if self.host in ("0.0.0.0", "::"):  # every address (``::`` takes IPv4 too unless IPV6_V6ONLY)
            return True
        try:
            mine, theirs = ipaddress.ip_address(self.host), ipaddress.ip_address(host)
        except ValueError:
            return False
        mapped = getattr(mine, "ipv4_mapped", None)
        return mine == theirs or mapped == theirs


def _address(hex_address: str) -> str:
    """``/proc/net/tcp``'s ``0100007F`` (IPv4) or 32 hex digits (IPv6), each 32-bit word in host order."""
    raw = bytes.fromhex(hex_address)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw))


def _listening_sockets(proc: Path = Path("/proc")) -> dict[int, Listening]:
    """socket inode -> its address, for every TCP socket in LISTEN in this network namespace."""
    found: dict[int, Listening] = {}
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != LISTEN:
                continue
            address, _, port = fields[1].partition(":")
            try:
                found[int(fields[9])] = Listening(_address(address), int(port, 16))
            except ValueError:
                continue
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:  # gone, or not ours to read
        return inodes
    for name in names:
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def listening(pid: int) -> list[Listening] | None:
    """The TCP sockets that ``pid`` or any process below it listens on, sorted; None where ``/proc`` cannot say
    (not Linux), so a caller falls back on waiting."""
    if not Path("/proc/net/tcp").exists():
        return None
    inodes: set[int] = set()
    for each in (pid, *descendants(pid)):
        inodes |= _socket_inodes(each)
    sockets = _listening_sockets()
    return sorted({sockets[i] for i in inodes if i in sockets})
