#!/usr/bin/env python3
"""Time to first token with the prefix KV coming back through Kvasir, and the logits it gives.

    /usr/bin/python3 bench/ttft.py --shape tiny --layouts layer,block                      # CPU, fp32, ~15 s
    KVASIR_BIN=/path/to/kvasir python bench/ttft.py --shape llama-3-8b --tokens 1024,4096,16384,32768 \
        --layouts layer,layer8,block --hf-check --json ttft.json                             # GPU, bf16

A Llama-architecture decoder (RMSNorm, rotary positions, grouped-query attention, SwiGLU; ttft_model.py) in
torch, with random weights from a fixed seed: bf16 on a GPU, fp32 on the CPU (``--hf-check``: compared with
transformers' ``LlamaForCausalLM`` carrying the same weights, where transformers is importable). Its KV cache is paged as
vLLM's FlashAttention backend pages it: per layer a ``[2, num_blocks, 16, kv_heads, head_dim]`` tensor
(16 tokens a block: vLLM's default), the sequence in blocks 0, 1, 2, ... A node is started (``KVASIR_BIN``,
else the CLI built in .build/cli) with ``--memory`` for the longest prompt, unless ``--node`` names one.

Request A: full prefill of an N-token prompt (its TTFT), then its full blocks saved to the node as
chains: ``batch_put_from_multi_buffers(..., chain=True)`` (TCP: chained puts carry PUT's chain flags),
straight from the cache tensors on the CPU, through a host copy from a GPU.
Request B: the same N tokens plus a new suffix. The hit is the number of leading blocks whose values all
exist (one ``batch_is_exist``; at least one token is always computed); their KV is loaded from the node
straight into B's cache, then only the rest of the prompt is computed. Each mode is timed from the
request's arrival (hashing its blocks) to its logits:
  recompute  B's whole prompt prefilled (no Kvasir);
  first      load every hit block, then compute (what vLLM's synchronous connector does);
  overlap    group by group of layers: over shared memory every group's loads are queued at once (layer order,
             the loader's CUDA stream); over TCP a loader thread fetches group g+1's blocks while group g
             computes; the forward pass waits for a group's blocks just before its first layer (what vLLM's
             wait_for_layer_load allows); layouts with more than one group only.
Loads over shared memory (``--transport shm``, a node on this host) use
``batch_get_into_multi_buffers_submit_local``: a memcpy from the node's arena into CPU tensors; into a GPU, one DMA per
value from the arena into a staging tensor on the GPU, then a copy kernel per layer into the paged cache.
Over TCP (``--transport tcp``, e.g. a remote node) they use
``batch_get_into_multi_buffers``: into CPU tensors in place, into a host copy for a GPU.

Values and keys
---------------
Keys are the vLLM connector's (``kvasir.integrations.vllm.block_key`` over ``chained_block_hashes``:
each names its whole prefix). ``--layouts`` (several may be measured in one run):
  block    the connector's own layout: one value per block holding every layer's K and V slices, under
           the connector's key;
  layer    one value per block *and layer* (that layer's K then V slice, 2 x 16 x kv_heads x head_dim
           elements, 64 KiB at llama-3-8b bf16) under the connector's key plus ``/L{layer}``;
  layerN   one value per block and group of N layers, key plus ``/L{first}-{last}``.
Each group's blocks are one chain. Why values per layer (or group): layer-wise overlap needs layer i's
blocks on their own — loaded, and known to be loaded, before layer i+1 runs. A whole-block value gives no
layer until its last byte is in, and the protocol has no ranged read (GET and LEASE return whole values),
so overlap with the connector's layout would take partial reads that do not exist. Per-layer values need
nothing new; they cost L times more keys to look up and lease (the bytes are the same: ~110 bytes of key
per 64 KiB value), which groups of N layers cut to L/N at the price of a coarser overlap.

Checks, each repeat: B's last-token logits against (a) the same computation with A's locally computed
KV in place of the loaded one (must be bit-identical: the KV bytes are the same; the loaded cache is also
compared with A's byte for byte) and (b) the full recompute of B's prompt (other kernels and chunking:
the max abs difference and whether the argmax agrees are reported; bit-identity is not claimed).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ttft_model import BLOCK_TOKENS, SHAPES, Llama, PagedCache, compare, hf_check  # noqa: E402,F401 (tests use them)


def stage(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --- keys and values ------------------------------------------------------------------------------------

class Layout:
    """Which values hold a request's blocks: ``block`` (the vLLM connector's: one value per block with every
    layer's slices, under the connector's key), ``layer`` (one value per block and layer, key + ``/L{i}``) or
    ``layerN`` (one per block and group of N layers, key + ``/L{first}-{last}``). Each group's blocks are one
    chain; a group's values can be loaded, and waited for, on their own."""

    def __init__(self, name: str, model_name: str, layers: int):
        m = re.fullmatch(r"layer(\d*)", name)
        if name == "block":
            size = layers
        elif m and (not m.group(1) or 1 <= int(m.group(1)) <= layers):
            size = int(m.group(1) or 1)
        else:
            raise ValueError(f"layout {name!r}: block, layer or layerN (N layers per value, 1 to {layers})")
        self.name, self.model_name, self.layers = name, model_name, layers
        self.groups = [range(a, min(a + size, layers)) for a in range(0, layers, size)]
        self.suffixes = [""] if name == "block" else [f"/L{g[0]}" if len(g) == 1 else f"/L{g[0]}-{g[-1]}" for g in self.groups]

    def block_keys(self, tokens, salt: str = ""):
        from kvasir.integrations.vllm import block_key, chained_block_hashes
        return [block_key(self.model_name, h.hex()) for h in chained_block_hashes(tokens, BLOCK_TOKENS, salt)]

    def value_keys(self, block_keys, groups=None):
        """Per chain (each of ``groups``, default all) the keys of the values of the blocks ``block_keys`` name."""
        return [[k + self.suffixes[g] for k in block_keys] for g in (range(len(self.groups)) if groups is None else groups)]

    def chains(self, block_keys, cache: PagedCache, groups=None):
        """Per chain (each of ``groups``, default all), (keys, addresses per key, sizes per key) of blocks 0, 1,
        ... of ``cache``, named by ``block_keys``."""
        if not block_keys:
            return []
        groups = range(len(self.groups)) if groups is None else groups
        return [(keys, *cache.pieces(self.groups[g], len(block_keys)))
                for g, keys in zip(groups, self.value_keys(block_keys, groups))]


def _flatten(chains):
    return [k for c in chains for k in c[0]], [a for c in chains for a in c[1]], [s for c in chains for s in c[2]]


def _leading_ones(row) -> int:
    return next((j for j, p in enumerate(row) if p != 1), len(row))


class Kv:
    """Saves and loads a request's blocks through ``store`` in ``layout``. ``transport``: ``shm`` loads with
    the local (arena) calls, ``tcp`` with the socket ones; puts are chained, so they go over TCP either way.
    CPU caches are read and written in place; a GPU cache goes through a CPU copy of it over TCP."""

    def __init__(self, store, layout: Layout, transport: str):
        if transport not in ("shm", "tcp"):
            raise ValueError(f"transport {transport!r}: shm or tcp")
        self.store, self.layout, self.transport = store, layout, transport
        self._mirrors = {}   # id(cache) -> its registered CPU mirror (the cache itself on the CPU)

    def host(self, cache: PagedCache) -> PagedCache:
        """The cache's registered CPU side: the cache itself on the CPU, else a CPU tensor of its shape (kept
        until :meth:`forget`)."""
        held = self._mirrors.get(id(cache))
        if held is None:
            mirror = cache if cache.all.device.type == "cpu" else PagedCache.like(cache, "cpu")
            self.store.register_buffer(mirror.all.data_ptr(), mirror.all.numel() * mirror.all.element_size())
            held = self._mirrors[id(cache)] = (cache, mirror)   # the cache is kept: its id is not reused meanwhile
        return held[1]

    def forget(self, cache: PagedCache) -> None:
        """Unregisters (and drops) the cache's CPU side."""
        _, mirror = self._mirrors.pop(id(cache), (None, None))
        if mirror is not None:
            self.store.unregister_buffer(mirror.all.data_ptr())

    def uses_host(self, cache: PagedCache) -> bool:
        """Whether loads into ``cache`` go through its registered CPU side (all but shm into GPU memory):
        call :meth:`host` before timing a load, so that the registration (and a GPU cache's CPU copy) is not timed."""
        return self.transport == "tcp" or cache.all.device.type == "cpu"

    def keys(self, tokens):
        """Per chain (group of layers) the keys of ``tokens``' full blocks."""
        return self.layout.value_keys(self.layout.block_keys(tokens))

    def save(self, tokens, cache: PagedCache) -> int:
        """Puts the full blocks of ``tokens`` from ``cache``, each chain with one chained put; returns the
        number of values stored. Raises naming the first failure code."""
        mirror = self.host(cache)
        if mirror is not cache:
            mirror.all.copy_(cache.all)
        stored = 0
        for keys, addrs, sizes in self.layout.chains(self.layout.block_keys(tokens), mirror):
            codes = self.store.batch_put_from_multi_buffers(keys, list(addrs), list(sizes), chain=True)
            bad = [c for c in codes if c != 0]
            if bad:
                raise RuntimeError(f"saving {len(bad)} of {len(keys)} values failed (first code {bad[0]}); "
                                   "is the node's --memory (and --max-value) large enough?")
            stored += len(keys)
        return stored

    def hit_blocks(self, block_keys) -> int:
        """Leading blocks of ``block_keys`` (``layout.block_keys`` of a prompt) whose values (every layer's)
        exist on the node: one batch_is_exist."""
        chains = self.layout.value_keys(block_keys)
        if not chains[0]:
            return 0
        present = self.store.batch_is_exist([k for c in chains for k in c])
        n = len(chains[0])
        return min(_leading_ones(present[r:r + n]) for r in range(0, len(present), n))

    def load(self, block_keys, cache: PagedCache, groups=None):
        """Starts loading the blocks named by ``block_keys`` into blocks 0, 1, ... of ``cache`` (only the values
        of ``groups`` of layers, default all); returns a callable that waits for them and checks each arrived whole."""
        blocks = len(block_keys)
        if blocks == 0:
            return lambda: None
        target = self.host(cache) if self.uses_host(cache) else cache
        keys, addrs, sizes = _flatten(self.layout.chains(block_keys, target, groups))
        expect = [sum(s) for s in sizes]

        def check(got):
            if list(got) != expect:
                bad = next(i for i, (g, e) in enumerate(zip(got, expect)) if g != e)
                raise RuntimeError(f"value {keys[bad]!r}: got {got[bad]} (expected {expect[bad]} bytes)")

        if self.transport == "shm" and cache.all.device.type != "cpu":
            return self._load_staged(block_keys, cache, groups)
        if self.transport == "shm":
            pending = self.store.batch_get_into_multi_buffers_submit_local(keys, addrs, sizes)
            return lambda: check(pending.wait())
        check(self.store.batch_get_into_multi_buffers(keys, addrs, sizes))
        if target is not cache:
            for i in (i for g in (groups if groups is not None else range(len(self.layout.groups)))
                      for i in self.layout.groups[g]):
                cache.layers[i][:, :blocks].copy_(target.layers[i][:, :blocks], non_blocking=True)
        return lambda: None

    def _load_staged(self, block_keys, cache: PagedCache, groups=None):
        """Shared memory into a GPU cache: each value is one DMA from the arena into a staging tensor on the GPU,
        then one copy kernel per layer moves its K and V slices into the paged cache (on the GPU: ~1 ms for
        2 GiB). The cache's own pieces are 32 KiB (one layer's K or V of one block): as DMA targets, one
        copy-engine set-up each, they moved 2 GiB at ~20 GB/s on an H100, whole values at the PCIe rate
        (docs/benchmarks.md). This is how engines' offloading connectors load, through a staging buffer."""
        import torch
        blocks = len(block_keys)
        groups = range(len(self.layout.groups)) if groups is None else groups
        pending = []
        for g, keys in zip(groups, self.layout.value_keys(block_keys, groups)):
            layers = self.layout.groups[g]
            staging = torch.empty((blocks, len(layers), *cache.layers[0].shape[:1], *cache.layers[0].shape[2:]),
                                  dtype=cache.all.dtype, device=cache.all.device)
            per = staging[0].numel() * staging.element_size()
            base = staging.data_ptr()
            handle = self.store.batch_get_into_multi_buffers_submit_local(
                keys, [[base + j * per] for j in range(blocks)], [[per]] * blocks)
            pending.append((keys, layers, staging, handle, per))

        def finish():
            for keys, layers, staging, handle, per in pending:
                got = handle.wait()
                bad = next((i for i, n in enumerate(got) if n != per), None)
                if bad is not None:
                    raise RuntimeError(f"value {keys[bad]!r}: got {got[bad]} (expected {per} bytes)")
                for li, layer in enumerate(layers):   # [blocks, 2, 16, kv heads, head dim] -> [2, blocks, ...]
                    cache.layers[layer][:, :blocks].copy_(staging[:, li].transpose(0, 1))
        return finish

    def remove(self, tokens) -> None:
        keys = [k for c in self.keys(tokens) for k in c]
        if keys:   # codes unchecked: a test may have removed some already
            self.store.batch_remove(keys)


# --- requests ---------------------------------------------------------------------------------------------

def _sync(model: Llama) -> None:
    if model.device != "cpu":
        model.torch.cuda.synchronize()


def _clock(model: Llama) -> float:
    _sync(model)
    return time.perf_counter()


def prompts(model: Llama, tokens: int, suffix: int, seed: int):
    """Request A's prompt (``tokens`` ids) and request B's (the same plus ``suffix`` new ones)."""
    g = model.torch.Generator().manual_seed(seed)
    ids = model.torch.randint(0, model.s["vocab"], (tokens + suffix,), generator=g).tolist()
    return ids[:tokens], ids


def request_a(model: Llama, kv: Kv, prompt):
    """Full prefill, then the save: (cache, logits, {"prefill": s, "save": s, "values": n})."""
    cache = PagedCache(model, len(prompt))
    t0 = _clock(model)
    logits = model.forward(prompt, 0, cache)
    t1 = _clock(model)
    values = kv.save(prompt, cache)
    t2 = _clock(model)
    return cache, logits, {"prefill": t1 - t0, "save": t2 - t1, "values": values}


def usable_hit(prompt, hit_blocks: int) -> int:
    """Tokens of the prompt taken from the cache: the hit's, less one block when it would cover the whole
    prompt (the last token is always computed: its logits are the answer)."""
    if hit_blocks * BLOCK_TOKENS >= len(prompt):
        hit_blocks = (len(prompt) - 1) // BLOCK_TOKENS
    return hit_blocks * BLOCK_TOKENS


def request_b(model: Llama, kv: Kv, prompt, mode: str, cache: PagedCache = None, timeout: float = 600.0, graphed=None):
    """Request B in ``mode`` (first, overlap): (cache, logits, timings). Timings: ``total`` from the
    request's arrival to its logits; ``lookup`` (hashing, keys, one batch_is_exist); ``load`` (first: until
    every block is in; overlap: the time the forward pass waited for blocks); ``compute``; ``hit_tokens``."""
    if mode not in ("first", "overlap"):
        raise ValueError(f"mode {mode!r}: first or overlap")
    cache = cache or PagedCache(model, len(prompt))
    t0 = _clock(model)
    block_keys = kv.layout.block_keys(prompt)
    hit = usable_hit(prompt, kv.hit_blocks(block_keys)) // BLOCK_TOKENS
    block_keys = block_keys[:hit]
    t1 = _clock(model)
    waited = [0.0]
    queued = 0.0
    before_layer = thread = None
    if mode == "first" or hit == 0:
        kv.load(block_keys, cache)()
    elif kv.transport == "shm":
        # Asynchronous loads: every group's DMAs are queued now, in layer order, on the loader's CUDA stream (or
        # copied on the CPU); the forward pass waits for a group just before its first layer. No thread: the
        # submissions take milliseconds, and a Python loader thread would fight the forward pass for the GIL.
        groups = kv.layout.groups
        if len(groups) < 2:
            raise ValueError("layer-wise overlap needs values per layer or group of layers (layout layer or layerN)")
        w0 = time.perf_counter()
        finishes = [kv.load(block_keys, cache, groups=[n]) for n in range(len(groups))]
        queued = time.perf_counter() - w0   # before t2: part of the load, not of the compute
        group_at = {g[0]: n for n, g in enumerate(groups)}

        def before_layer(i):
            n = group_at.get(i)
            if n is not None:
                w1 = time.perf_counter()
                finishes[n]()
                waited[0] += time.perf_counter() - w1
    else:
        groups = kv.layout.groups
        if len(groups) < 2:
            raise ValueError("layer-wise overlap needs values per layer or group of layers (layout layer or layerN)")
        ready = [threading.Event() for _ in groups]
        waiters = [None] * len(groups)
        failed = []
        group_at = {g[0]: n for n, g in enumerate(groups)}   # first layer of each group -> the group

        def loader():
            try:
                for n in range(len(groups)):
                    waiters[n] = kv.load(block_keys, cache, groups=[n])
                    ready[n].set()
            except BaseException as ex:   # noqa: BLE001 - reported by the layer that waits
                failed.append(ex)
                for e in ready:
                    e.set()

        thread = threading.Thread(target=loader, name="ttft-loader", daemon=True)
        thread.start()

        def before_layer(i):
            n = group_at.get(i)
            if n is None:
                return   # loaded with its group's first layer
            w0 = time.perf_counter()
            if not ready[n].wait(timeout):
                raise TimeoutError(f"layer {i}'s blocks were not requested within {timeout} s")
            if failed:
                raise RuntimeError(f"loading layer {i}'s blocks failed: {failed[0]}")
            waiters[n]()
            waited[0] += time.perf_counter() - w0
    # The compute starts now. Overlap: no device-wide synchronize here, it would wait for the queued loads too.
    t2 = time.perf_counter() if before_layer is not None else _clock(model)
    start = hit * BLOCK_TOKENS
    if graphed is not None and before_layer is None:
        logits = graphed(prompt[start:])
    else:
        logits = model.forward(prompt[start:], start, cache, before_layer)
    t3 = _clock(model)
    if thread is not None:
        thread.join(timeout)
    load = t2 - t1 if mode == "first" else queued + waited[0]
    return cache, logits, {"total": t3 - t0, "lookup": t1 - t0, "load": load,
                           "compute": (t3 - t2) - (0.0 if mode == "first" else waited[0]), "hit_tokens": start}


def reference(model: Llama, local: PagedCache, prompt, hit_tokens: int):
    """B's logits computed as B does from ``hit_tokens`` on, with A's locally computed KV for the hit:
    (cache, logits, seconds of the compute)."""
    cache = PagedCache(model, len(prompt))
    cache.copy_blocks_from(local, hit_tokens // BLOCK_TOKENS)
    t0 = _clock(model)
    logits = model.forward(prompt[hit_tokens:], hit_tokens, cache)
    return cache, logits, _clock(model) - t0


def recompute(model: Llama, prompt, graphs: bool = False):
    """B's prompt prefilled whole: (logits, seconds); ``graphs``: replaying a CUDA graph captured beforehand."""
    cache = PagedCache(model, len(prompt))
    run = model.capture(len(prompt), 0, cache) if graphs else (lambda ids: model.forward(ids, 0, cache))
    t0 = _clock(model)
    logits = run(prompt)
    return logits, _clock(model) - t0


# --- the bench ------------------------------------------------------------------------------------------

def start_node(memory_bytes: int):
    cmd = os.environ.get("KVASIR_BIN", "").split() or ["dotnet", os.path.join(ROOT, ".build", "cli", "kvasir.dll")]
    node = subprocess.Popen([*cmd, "serve", "--host", "127.0.0.1", "--port", "0", "--memory", f"{memory_bytes >> 20}MiB",
                             "--max-value", "64MiB", "--admin-port", "off", "--log-level", "warning"],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    line = node.stdout.readline()
    m = re.search(r"serving on (\S+:\d+) ", line)
    if not m:
        node.kill()
        node.wait(10)
        raise RuntimeError(f"node did not start: {line!r}")
    return node, m.group(1)


def stop_node(node) -> None:
    node.terminate()
    try:
        node.wait(15)
    except subprocess.TimeoutExpired:
        node.kill()
        node.wait(10)


def kv_bytes_per_token(shape: dict, element: int) -> int:
    return shape["layers"] * 2 * shape["kv_heads"] * shape["head_dim"] * element


def bench_one(model, kvs, tokens: int, suffix: int, seed: int, modes, graphs: bool = False) -> dict:
    """One repeat at one prompt length: A, the reference, the recompute and every B mode, checked."""
    prompt_a, prompt_b = prompts(model, tokens, suffix, seed)
    out = {}
    first_kv = kvs[0]
    local, _, out["A"] = request_a(model, first_kv, prompt_a)
    for kv in kvs[1:]:   # the other layout's values (saving them is not timed as A)
        kv.save(prompt_a, local)
    logits_full, out["recompute"] = recompute(model, prompt_b, graphs)
    hit_tokens = usable_hit(prompt_b, len(prompt_a) // BLOCK_TOKENS)
    ref_cache, logits_ref, out["local_compute"] = reference(model, local, prompt_b, hit_tokens)
    del ref_cache
    cache_b = PagedCache(model, len(prompt_b))
    for kv in kvs:
        if kv.uses_host(cache_b):
            kv.host(cache_b)   # registered (a GPU cache's CPU copy made) before the clock starts
    # CUDA graph of B's suffix pass ("first" modes), captured before any clock runs, as an engine does at start
    graphed = model.capture(len(prompt_b) - hit_tokens, hit_tokens, cache_b) if graphs else None
    for mode, kv in modes:
        cache_b.all.zero_()
        _, logits_b, timings = request_b(model, kv, prompt_b, mode, cache_b, graphed=graphed)
        timings["vs_local_prefix"] = compare(logits_b, logits_ref)
        timings["vs_recompute"] = compare(logits_b, logits_full)
        timings["cache_equal"] = cache_b.equal_blocks(local, timings["hit_tokens"] // BLOCK_TOKENS)
        if timings["hit_tokens"] != hit_tokens:
            raise RuntimeError(f"{mode}: hit {timings['hit_tokens']} tokens, expected {hit_tokens}")
        out[f"{mode}/{kv.layout.name}"] = timings
    out["ref_vs_recompute"] = compare(logits_ref, logits_full)
    for kv in kvs:
        kv.remove(prompt_a)
        kv.forget(cache_b)
        kv.forget(local)
    return out


def median_of(runs, *path):
    vals = []
    for r in runs:
        v = r
        for p in path:
            v = v[p]
        vals.append(v)
    return statistics.median(vals)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    ap.add_argument("--tokens", default="128,512", help="prefix lengths, comma-separated (default 128,512)")
    ap.add_argument("--suffix", type=int, default=None, help="new tokens of request B (default 16 tiny, 128 else)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default=None, help="cpu or cuda (default cuda when available)")
    ap.add_argument("--transport", choices=("shm", "tcp"), default="shm", help="loads: shm (same host) or tcp")
    ap.add_argument("--layouts", default="layer", help="comma-separated: block, layer, layerN (default layer)")
    ap.add_argument("--node", default=None, help="host:port of a running node (default: start one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: steadier on a shared machine; 0: torch's choice)")
    ap.add_argument("--hf-check", action="store_true",
                    help="also compare the model with transformers' LlamaForCausalLM (tiny shape, fp32), where importable")
    ap.add_argument("--json", default=None, help="write every repeat's figures here")
    ap.add_argument("--cuda-graphs", action="store_true",
                    help="recompute and B's suffix pass replay CUDA graphs captured before the clock (as vLLM runs its "
                         "forward passes); overlap modes stay eager (they wait between layers)")
    args = ap.parse_args(argv)
    import torch
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    shape = SHAPES[args.shape]
    try:
        lengths = [int(x) for x in args.tokens.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--tokens: comma-separated whole numbers, not {args.tokens!r}")
    if device != "cpu" and not torch.cuda.is_available():
        ap.error(f"--device {device}: torch sees no CUDA device here (use --device cpu)")
    if not lengths or min(lengths) < BLOCK_TOKENS:
        ap.error(f"--tokens: lengths of at least {BLOCK_TOKENS} (one block)")
    if args.cuda_graphs and device == "cpu":
        ap.error("--cuda-graphs: needs a CUDA device")
    if args.repeats < 1:
        ap.error("--repeats: at least 1")
    suffix = args.suffix if args.suffix is not None else (16 if args.shape == "tiny" else 128)
    if suffix < 1:
        ap.error("--suffix: at least 1 token")
    layouts = [x.strip() for x in args.layouts.split(",") if x.strip()]
    if not layouts or len(set(layouts)) != len(layouts):
        ap.error("--layouts: block, layer or layerN, each once")
    try:
        [Layout(name, "", shape["layers"]) for name in layouts]
    except ValueError as ex:
        ap.error(f"--layouts: {ex}")
    if device == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    stage(f"model {args.shape} on {device}, {torch.get_num_threads()} CPU threads")
    model = Llama(shape, device, seed=args.seed)
    if model._suffix_attention is not None:
        stage(f"attention after a cached prefix: {model._suffix_attention[0]}")
    per_token = kv_bytes_per_token(shape, model.embed.element_size())
    node = None
    address = args.node
    if address is None:
        need = per_token * max(lengths) * len(layouts)
        node, address = start_node(need + need // 4 + (256 << 20))
        stage(f"node on {address} ({(need + need // 4 + (256 << 20)) >> 20} MiB)")
    try:
        import kvasir
        store = kvasir.KvStore(address, transport=args.transport, request_timeout=120)
        kvs = [Kv(store, Layout(name, f"ttft-{args.shape}", shape["layers"]), args.transport) for name in layouts]
        modes = [("first", kv) for kv in kvs] + [("overlap", kv) for kv in kvs if len(kv.layout.groups) > 1]
        bench_one(model, kvs, 4 * BLOCK_TOKENS, suffix, 1 << 30, modes, args.cuda_graphs)   # warm: kernels, allocator, arena, connection
        results = {}
        for n in lengths:
            runs = []
            for r in range(args.repeats):
                runs.append(bench_one(model, kvs, n, suffix, args.seed * 1000003 + n * 31 + r, modes, args.cuda_graphs))
                stage(f"{n} tokens, repeat {r + 1}: recompute {runs[-1]['recompute'] * 1e3:.1f} ms, "
                      + ", ".join(f"{k} {v['total'] * 1e3:.1f} ms" for k, v in runs[-1].items() if isinstance(v, dict) and "total" in v))
            results[n] = runs
        report(results, shape, per_token, device, args, suffix, modes)
        hf = hf_check(device) if args.hf_check else None
        if hf:
            print("\n" + hf)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump({"shape": args.shape, "device": device, "transport": args.transport, "suffix": suffix, "hf_check": hf,
                           "runs": {str(k): v for k, v in results.items()}}, f, indent=1)
        store.close()
    finally:
        if node is not None:
            stop_node(node)
    return 0


def report(results, shape, per_token, device, args, suffix, modes) -> None:
    import torch
    name = torch.cuda.get_device_name() if device != "cpu" else "CPU"
    print(f"\nTTFT, {args.shape} ({shape['layers']} layers, KV {per_token / 1024:g} KiB/token, "
          f"{'bf16' if device != 'cpu' else 'fp32'}) on {name}, loads over {args.transport}, "
          f"{'CUDA graphs for recompute and first/*' if args.cuda_graphs else 'eager'}, B = prefix + {suffix} "
          f"new tokens, medians of {args.repeats} (ms). load: until every hit block is in (first) or the time the "
          f"forward pass waited for blocks (overlap).\n")
    print("| prefix | request | TTFT | lookup | load | compute | recompute / TTFT | logits |")
    print("|---|---|---|---|---|---|---|---|")
    for n, runs in results.items():
        def ms(*path):
            return f"{median_of(runs, *path) * 1e3:.1f}"
        recomputed = median_of(runs, "recompute")
        print(f"| {n} | A: full prefill (then saved as chains in {ms('A', 'save')}) | {ms('A', 'prefill')} | | | "
              f"{ms('A', 'prefill')} | | |")
        diff = max(r["ref_vs_recompute"]["max_abs_diff"] for r in runs)
        same = all(r["ref_vs_recompute"]["argmax_agree"] for r in runs)
        print(f"| {n} | B: recompute (no Kvasir) | {ms('recompute')} | | | {ms('recompute')} | 1.0x | the local-prefix run "
              f"against this: max abs {diff:.3g}, argmax {'same' if same else 'DIFFERS'} |")
        for mode, kv in modes:
            tag = f"{mode}/{kv.layout.name}"
            bits = all(r[tag]["vs_local_prefix"]["identical"] and r[tag]["cache_equal"] for r in runs)
            diff = max(r[tag]["vs_recompute"]["max_abs_diff"] for r in runs)
            same = all(r[tag]["vs_recompute"]["argmax_agree"] for r in runs)
            print(f"| {n} | B: {tag} | {ms(tag, 'total')} | {ms(tag, 'lookup')} | {ms(tag, 'load')} | {ms(tag, 'compute')} | "
                  f"{recomputed / median_of(runs, tag, 'total'):.1f}x | {'= local-prefix bits' if bits else 'DIFFER from local-prefix'}"
                  f"; vs recompute max abs {diff:.3g}, argmax {'same' if same else 'DIFFERS'} |")


if __name__ == "__main__":
    sys.exit(main())
