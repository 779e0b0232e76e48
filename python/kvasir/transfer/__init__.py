"""Point-to-point KV transfer engine (docs/transfer.md): KVTrans's connect/accept/reg_kv/send_kv/recv_kv
and UCCL P2P's one-sided reg/advertise/write/read over sessions of TCP lanes, interoperating with
the .NET engine (src/Kvasir.Transfer)."""

from .engine import Engine
from .regions import TransferError

__all__ = ["Engine", "TransferError"]
