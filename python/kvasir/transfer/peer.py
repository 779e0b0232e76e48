"""The scripted interop peer (docs/transfer.md § Interop peer):

    /usr/bin/python3 -m kvasir.transfer.peer [--port 0] [--host 127.0.0.1] [--auth-key HEX64] [--ncpus 1]
        [--nconn-per-cpu 2] [--slice-bytes 1048576] [--region-bytes 16777216] [--timeout 30]

It prints one JSON line per event on stdout, accepts one connection, advertises its whole region to
it, and then acts on the driver's notifications until `bye` (exit 0) or a failure (exit 1)."""

import argparse
import hashlib
import json
import sys

from .engine import Engine
from .regions import TransferError


def _emit(**event) -> None:
    print(json.dumps(event), flush=True)


def _pattern(np, length: int, seed: int):
    i = np.arange(length, dtype=np.int64)
    return ((i * 131 + seed) % 251).astype(np.uint8)


class _Peer:
    def __init__(self, engine: Engine, conn_id: int, region_bytes: int, shared: bool = False, cuda: bool = False):
        import numpy as np
        self.np = np
        self.engine = engine
        self.conn = conn_id
        self.torch = None
        if cuda:     # a GPU window (docs/transfer.md § GPU memory on the same host); Python only, for the benchmark
            import torch  # noqa: PLC0415
            if not torch.cuda.is_available():
                raise TransferError("--cuda-region needs a CUDA device; this process has none")
            self.torch = torch
            self.region = torch.zeros(region_bytes, dtype=torch.uint8, device="cuda")
            ok, self.mr = engine.reg(self.region)
            self._check(ok, "reg")
        elif shared:   # in /dev/shm: a same-host initiator copies with one memcpy (docs/transfer.md § Same host)
            ok, self.mr, self.region = engine.alloc_shared(region_bytes)
            self._check(ok, "alloc_shared")
        else:
            self.region = np.zeros(region_bytes, dtype=np.uint8)
            ok, self.mr = engine.reg(self.region)
            self._check(ok, "reg")
        self.base = self.region.data_ptr() if cuda else self.region.ctypes.data

    def _check(self, ok, what: str) -> None:
        if not ok:
            raise TransferError(f"{what}: {self.engine.last_error}")

    def _notify(self, msg: bytes) -> None:
        self._check(self.engine.send_notif(self.conn, msg), "send_notif")

    def _sha_of(self, off: int, length: int) -> bytes:
        if off < 0 or length < 0 or off + length > len(self.region):
            raise TransferError(f"sha range [{off}, +{length}) is outside the region of {len(self.region)} bytes")
        part = self.region[off:off + length]
        return b"sha:" + hashlib.sha256((part.cpu().numpy() if self.torch else part).tobytes()).hexdigest().encode()

    def _put(self, off: int, data) -> None:
        self.region[off:off + len(data)] = self.torch.from_numpy(data).cuda() if self.torch else data

    def _length(self, text: str) -> int:
        n = int(text)
        if not 1 <= n <= len(self.region):
            raise TransferError(f"length {n} is outside 1..{len(self.region)} (the region)")
        return n

    def start(self) -> None:
        ok, blob = self.engine.advertise(self.conn, self.mr, self.base, len(self.region))
        self._check(ok, "advertise")
        self._notify(b"advert:" + blob)

    def handle(self, note: bytes) -> bool:
        """Acts on one notification; False after `bye`."""
        bar = note.find(b"|")
        text = (note if bar < 0 else note[:bar]).decode("utf-8")
        blob = b"" if bar < 0 else note[bar + 1:]
        verb, _, args = text.partition(":")
        if verb == "sha":
            off, length = (int(x) for x in args.split(":"))
            self._notify(self._sha_of(off, length))
        elif verb == "fill":
            length_text, seed_text = args.split(":")
            n = self._length(length_text)
            self._put(0, _pattern(self.np, n, int(seed_text)))
            self._check(self.engine.write(self.conn, self.mr, self.base, n, blob, notif=f"filled:{n}".encode()), "write")
        elif verb == "read":
            n = self._length(args)
            self._check(self.engine.read(self.conn, self.mr, self.base, n, blob), "read")
            self._notify(self._sha_of(0, n))
        elif verb == "kv-echo":
            cap = int(args)
            bufs = [self.np.zeros(cap, dtype=self.np.uint8) for _ in range(2)]
            kv_ids = []
            for b in bufs:
                ok, kv_id = self.engine.reg_kv(self.conn, b)
                self._check(ok, "reg_kv")
                kv_ids.append(kv_id)
            ok, got = self.engine.recv_kv(kv_ids[0], cap)
            self._check(ok, "recv_kv")
            self._check(self.engine.send_kv(kv_ids[1], self.np.array(got, dtype=self.np.uint8)), "send_kv")
        elif verb == "layers":   # per-layer pull: fill each group, then announce it (last group first)
            tag, seed, groups, length = (int(x) for x in args.split(":"))
            if groups < 1 or length < 1 or groups * length > len(self.region):
                raise TransferError(f"{text}: {groups} groups of {length} bytes do not fit the region of {len(self.region)} bytes")
            data = _pattern(self.np, groups * length, seed)
            for g in reversed(range(groups)):
                self._put(g * length, data[g * length:(g + 1) * length])
                self._check(self.engine.notify_layer_ready(self.conn, tag, g), "notify_layer_ready")
        elif verb == "bye":
            return False
        else:
            raise TransferError(f"unknown notification {text[:40]!r}")
        return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kvasir.transfer.peer", description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--auth-key", default=None)
    ap.add_argument("--ncpus", type=int, default=1)
    ap.add_argument("--nconn-per-cpu", type=int, default=2)
    ap.add_argument("--slice-bytes", type=int, default=1 << 20)
    ap.add_argument("--region-bytes", type=int, default=16 << 20)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--shared-region", action="store_true", help="allocate the region in /dev/shm (alloc_shared)")
    ap.add_argument("--cuda-region", action="store_true", help="allocate the region in GPU memory (Python only)")
    ap.add_argument("--no-gpu-staging", action="store_true", help="offer no staging file for a GPU region: the lanes")
    a = ap.parse_args(argv)
    try:
        if a.region_bytes < 1:
            raise ValueError(f"--region-bytes must be at least 1 (got {a.region_bytes})")
        with Engine(a.host, a.ncpus, a.nconn_per_cpu, a.port, auth_key=a.auth_key, slice_bytes=a.slice_bytes,
                    timeout=a.timeout, gpu_staging=not a.no_gpu_staging) as engine:
            _emit(event="listening", port=engine.port, metadata=engine.get_metadata().hex())
            ok, _, _, conn_id = engine.accept()
            if not ok:
                raise TransferError(engine.last_error)
            _emit(event="accepted", conn_id=conn_id)
            peer = _Peer(engine, conn_id, a.region_bytes, a.shared_region, a.cuda_region)
            peer.start()
            while True:
                for _, note in engine.wait_notifs(1.0):
                    if not peer.handle(note):
                        _emit(event="bye")
                        return 0
                lost = engine.connection_error(conn_id)
                if lost is not None:
                    raise TransferError(lost)
    except (TransferError, ValueError, UnicodeDecodeError) as e:
        _emit(event="error", message=str(e))
        return 1


if __name__ == "__main__":
    sys.exit(main())
