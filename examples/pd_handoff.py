#!/usr/bin/python3
"""Prefill -> decode hand-off through the Kvasir transfer engine, with a small torch model, in two processes.

The decode process owns a KV buffer for the whole sequence, offers it to the prefill process (an advertisement sent
as a notification), and waits. The prefill process computes the KV of the prompt and its first token, writes the KV
straight into the decode process's buffer with one one-sided write whose notification says how many positions
landed and which token comes next. The decode process then continues decoding from there, never having seen the
prompt's activations. Its next-token logits equal those of computing everything in one process.

    /usr/bin/python3 examples/pd_handoff.py decode --steps 8 --out logits.npy      # prints its endpoint (hex)
    /usr/bin/python3 examples/pd_handoff.py prefill --peer HEX --prompt 3,14,15,92,65,35,89,79
    /usr/bin/python3 examples/pd_handoff.py local --prompt 3,14,15,92,65,35,89,79 --steps 8 --out ref.npy
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
from kvasir.transfer import Engine  # noqa: E402

VOCAB, D_MODEL, HEADS, LAYERS, MAX_LEN = 97, 64, 4, 2, 64
HEAD_DIM = D_MODEL // HEADS


class TinyDecoder(torch.nn.Module):
    """A 2-layer decoder-only transformer with causal attention and a KV cache: [layer, k/v, head, position, dim]."""

    def __init__(self, seed: int = 1234):
        super().__init__()
        g = torch.Generator().manual_seed(seed)

        def p(*shape):
            return torch.nn.Parameter(torch.randn(*shape, generator=g) * 0.2)
        self.embed = p(VOCAB, D_MODEL)
        self.pos = p(MAX_LEN, D_MODEL)
        self.qkv = torch.nn.ParameterList([p(D_MODEL, 3 * D_MODEL) for _ in range(LAYERS)])
        self.out = torch.nn.ParameterList([p(D_MODEL, D_MODEL) for _ in range(LAYERS)])
        self.mlp1 = torch.nn.ParameterList([p(D_MODEL, 4 * D_MODEL) for _ in range(LAYERS)])
        self.mlp2 = torch.nn.ParameterList([p(4 * D_MODEL, D_MODEL) for _ in range(LAYERS)])
        self.head = p(D_MODEL, VOCAB)

    @staticmethod
    def new_cache() -> torch.Tensor:
        return torch.zeros(LAYERS, 2, HEADS, MAX_LEN, HEAD_DIM, dtype=torch.float32)

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor, start: int, cache: torch.Tensor) -> torch.Tensor:
        """Runs tokens at positions start.. against the cache (filled up to start), writes their K/V into it and
        returns the logits of the last token."""
        n = tokens.shape[0]
        x = self.embed[tokens] + self.pos[start:start + n]
        for layer in range(LAYERS):
            q, k, v = (x @ self.qkv[layer]).split(D_MODEL, dim=-1)
            q, k, v = (t.view(n, HEADS, HEAD_DIM).transpose(0, 1) for t in (q, k, v))
            cache[layer, 0, :, start:start + n] = k
            cache[layer, 1, :, start:start + n] = v
            keys, values = cache[layer, 0, :, :start + n], cache[layer, 1, :, :start + n]
            scores = q @ keys.transpose(1, 2) / HEAD_DIM ** 0.5
            mask = torch.ones(n, start + n, dtype=torch.bool).tril(diagonal=start)
            scores = scores.masked_fill(~mask, float("-inf"))
            att = (scores.softmax(-1) @ values).transpose(0, 1).reshape(n, D_MODEL)
            x = x + att @ self.out[layer]
            x = x + torch.relu(x @ self.mlp1[layer]) @ self.mlp2[layer]
        return x[-1] @ self.head


def decode_steps(model, cache, position: int, token: int, steps: int) -> np.ndarray:
    """Greedy decoding from (position, token): the logits of each step, stacked."""
    out = []
    for _ in range(steps):
        logits = model(torch.tensor([token]), position, cache)
        out.append(logits.numpy().copy())
        token = int(logits.argmax())
        position += 1
    return np.stack(out)


def run_local(prompt, steps):
    model, cache = TinyDecoder(), TinyDecoder.new_cache()
    first = int(model(torch.tensor(prompt), 0, cache).argmax())
    return decode_steps(model, cache, len(prompt), first, steps)


def run_decode(steps: int, out: str, timeout: float) -> None:
    model, cache = TinyDecoder(), TinyDecoder.new_cache()
    with Engine("lo", 1, 4, 0) as eng:
        print(json.dumps({"endpoint": eng.get_metadata().hex()}), flush=True)
        ok, _, _, conn = eng.accept(timeout=timeout)
        if not ok:
            raise SystemExit(f"decode: no prefill connected: {eng.last_error}")
        kv = cache.numpy()                       # the cache's own memory: the KV lands in place
        ok, mr = eng.reg(kv)
        ok, blob = eng.advertise(conn, mr, kv.ctypes.data, kv.nbytes) if ok else (False, None)
        if not ok or not eng.send_notif(conn, b"advert:" + blob):
            raise SystemExit(f"decode: cannot offer the KV buffer: {eng.last_error}")
        notes = eng.wait_notifs(timeout)
        if not notes or not notes[0][1].startswith(b"kv:"):
            raise SystemExit(f"decode: no KV arrived within {timeout} s ({notes})")
        info = json.loads(notes[0][1][3:])
        logits = decode_steps(model, cache, info["positions"], info["next_token"], steps)
        np.save(out, logits)
        print(json.dumps({"decoded": steps, "from_position": info["positions"]}), flush=True)


def run_prefill(peer_hex: str, prompt, timeout: float) -> None:
    model, cache = TinyDecoder(), TinyDecoder.new_cache()
    first = int(model(torch.tensor(prompt), 0, cache).argmax())
    with Engine("lo", 1, 4, 0) as eng:
        ok, conn = eng.add_remote_endpoint(bytes.fromhex(peer_hex))
        if not ok:
            raise SystemExit(f"prefill: cannot reach the decode engine: {eng.last_error}")
        notes = eng.wait_notifs(timeout)
        if not notes or not notes[0][1].startswith(b"advert:"):
            raise SystemExit(f"prefill: no KV buffer offered within {timeout} s")
        blob = notes[0][1][len(b"advert:"):]
        kv = cache.numpy()
        ok, mr = eng.reg(kv)
        note = b"kv:" + json.dumps({"positions": len(prompt), "next_token": first}).encode()
        # The whole cache buffer goes across (positions past the prompt are zeros); a real engine writes only the
        # blocks it filled, one write per block range (writev).
        if not ok or not eng.write(conn, mr, kv.ctypes.data, kv.nbytes, blob, notif=note):
            raise SystemExit(f"prefill: the write failed: {eng.last_error}")
        print(json.dumps({"sent_bytes": kv.nbytes, "positions": len(prompt)}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("role", choices=["decode", "prefill", "local"])
    ap.add_argument("--peer", help="prefill: the decode engine's endpoint (hex, as decode printed it)")
    ap.add_argument("--prompt", default="3,14,15,92,65,35,89,79")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--out", default="logits.npy")
    ap.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args()
    prompt = [int(t) for t in a.prompt.split(",")]
    if a.role == "decode":
        run_decode(a.steps, a.out, a.timeout)
    elif a.role == "prefill":
        if not a.peer:
            raise SystemExit("prefill needs --peer HEX (the endpoint decode printed)")
        run_prefill(a.peer, prompt, a.timeout)
    else:
        np.save(a.out, run_local(prompt, a.steps))


if __name__ == "__main__":
    main()
