"""Lane socket buffers chosen by the path (docs/transfer.md § Threads, socket buffers), as the .NET engine's
``PathSocketBuffers`` does: once a lane's handshake is done, a lane on a short path (its peer on loopback, or a round
trip the kernel measured at <= 100 us) gets fixed 512 KiB SO_SNDBUF/SO_RCVBUF, so a write's slices stay in the shared
queue instead of megabytes of them waiting in each socket; any other lane keeps the kernel's autotuning, which grows
the window with the path (a fixed buffer is a fixed TCP window)."""

import ipaddress
import socket
import struct
import sys
from typing import Optional

SHORT_PATH_BYTES = 512 << 10
SHORT_PATH_RTT_US = 100
_TCP_INFO = getattr(socket, "TCP_INFO", 11)
_RTT_OFFSET = 68   # struct tcp_info: tcpi_rtt, microseconds (linux/tcp.h)


def choose(loopback: bool, rtt_us: Optional[int]) -> Optional[int]:
    """What a lane on this path gets: SHORT_PATH_BYTES, or None for the kernel's autotuning."""
    if loopback or (rtt_us is not None and 0 < rtt_us <= SHORT_PATH_RTT_US):
        return SHORT_PATH_BYTES
    return None


def round_trip_micros(sock: socket.socket) -> Optional[int]:
    """The connection's smoothed round trip as the kernel measured it (Linux TCP_INFO), or None where unreadable."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 104)
    except OSError:
        return None
    if len(info) < _RTT_OFFSET + 4:
        return None
    return struct.unpack_from("<I", info, _RTT_OFFSET)[0]


def _loopback(sock: socket.socket) -> bool:
    try:
        addr = ipaddress.ip_address(sock.getpeername()[0])
    except (OSError, ValueError):
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def apply(sock: socket.socket, setting: Optional[int]) -> Optional[int]:
    """Sets a lane's buffers once its handshake is done. ``setting``: None = by the path (above), 0 = the kernel's
    autotuning, a size = fixed. Returns the size set, or None where the kernel keeps sizing them."""
    size = choose(_loopback(sock), round_trip_micros(sock)) if setting is None else (setting or None)
    if size is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return size


def check_setting(setting: Optional[int]) -> Optional[int]:
    """Validates an engine's ``socket_buffer``: None, 0 or 64 KiB..256 MiB."""
    if setting is None or setting == 0:
        return setting
    if not (64 << 10) <= int(setting) <= (256 << 20):
        raise ValueError(f"socket_buffer must be None (by the path), 0 (the kernel's autotuning) or 64 KiB..256 MiB, "
                         f"got {setting}")
    return int(setting)
