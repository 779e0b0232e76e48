#!/usr/bin/env python3
"""The vLLM connector's per-layer-group loads against its whole-step loads, through the connector itself.

    /usr/bin/python3 bench/vllm_overlap.py                                   # CPU, fp16 caches, ~1 min
    KVASIR_BIN=/tmp/kv/publish/kvasir python bench/vllm_overlap.py --device cuda --layers 32 --blocks 1024 \
        --kv-heads 8 --head-dim 128 --hidden 4096 --tokens 512                 # GPU (device machine)

One engine saves ``--blocks`` prompt blocks (16 tokens each) of ``--layers`` FlashAttention-layout kv caches
([2, blocks, 16, kv_heads, head_dim]); a second engine loads them back with KvasirConnector's hooks called as vLLM's
model runner calls them: ``start_load_kv``, then per layer ``wait_for_layer_load`` followed by that layer's
"compute" (a ``--tokens`` x ``--hidden`` by ``--hidden`` x ``--hidden`` matmul stands in for the layer's forward),
then ``wait_for_save``. Timed from ``start_load_kv`` to ``wait_for_save``'s return: the step's time to its last
layer. Candidates (run back to back, each repeat in turn; medians): ``kvasir_layout`` block / layerN, with the loads
waited for in start_load_kv (``kvasir_async_load`` false: the old synchronous connector) or per layer (true), over
``shm`` (the node's arena on this host) and ``tcp``. ``compute only`` is the same forward without any load. Every
load is checked: no load errors and each loaded block equal to the saved one (the last repeat).
The vLLM objects are the test stand-ins (python/tests/vllm_standins.py, mirroring vLLM at 003df296).
"""
import argparse
import os
import signal
import statistics
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "python", "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

BLOCK = 16


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--blocks", type=int, default=128, help="blocks loaded (the cache holds this many plus one)")
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--tokens", type=int, default=256, help="rows of the stand-in layer's matmul")
    ap.add_argument("--layouts", default="block,layer4,layer1")
    ap.add_argument("--transports", default="shm,tcp")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.layers < 1 or args.blocks < 1 or args.repeats < 1:
        ap.error("--layers, --blocks and --repeats must be at least 1")

    import torch
    import gpu_bench
    from kvasir import KvStore
    from kvasir.integrations.vllm import KVConnectorRole, KvasirConnector
    from vllm_standins import (CacheConfig, ForwardContext, FullAttentionSpec, KVCacheBlocks, KVCacheConfig,
                               KVCacheGroupSpec, KVTransferConfig, ModelConfig, NewRequestData, ParallelConfig,
                               Request, SchedulerOutput, VllmConfig)

    names = [f"model.layers.{i}.attn" for i in range(args.layers)]
    nb = args.blocks + 1
    shape = (2, nb, BLOCK, args.kv_heads, args.head_dim)
    per_block = args.layers * 2 * BLOCK * args.kv_heads * args.head_dim * 2
    need = args.blocks * per_block * len(args.layouts.split(",")) * 2 + (256 << 20)
    g = torch.Generator().manual_seed(1)
    src = {n: torch.randn(shape, generator=g).to(torch.float16).to(args.device) for n in names}
    w = torch.randn(args.hidden, args.hidden, generator=g).to(args.device)
    x = torch.randn(args.tokens, args.hidden, generator=g).to(args.device)
    tokens = list(range(1000, 1000 + args.blocks * BLOCK + 1))
    ids = list(range(args.blocks + 1))

    def sync():
        if args.device != "cpu":
            torch.cuda.synchronize()

    def connector(role, store, caches, **extra):
        cfg = VllmConfig(KVTransferConfig(kv_connector_extra_config=extra, kv_load_failure_policy="recompute"),
                         CacheConfig(block_size=BLOCK),
                         ModelConfig(model), ParallelConfig())
        kcc = KVCacheConfig(num_blocks=nb, kv_cache_groups=[KVCacheGroupSpec(list(names), FullAttentionSpec(BLOCK))])
        c = KvasirConnector(cfg, role, kcc, store=store)
        if caches is not None:
            c.register_kv_caches(caches)
        return c

    def meta_for(sched, req_id):
        req = Request(req_id, tokens)
        n = sched.get_num_new_matched_tokens(req, 0)[0]
        sched.update_state_after_alloc(req, KVCacheBlocks(ids), n)
        return n, sched.build_connector_meta(SchedulerOutput(
            scheduled_new_reqs=[NewRequestData(req_id, tokens, (ids,), n)], num_scheduled_tokens={req_id: len(tokens) - n}))

    def forward(worker, meta):
        """One step as vLLM's model runner drives the connector; returns (seconds, load errors)."""
        sync()
        t0 = time.perf_counter()
        if worker is not None:
            worker.bind_connector_metadata(meta)
            worker.start_load_kv(ForwardContext())
        y = x
        for name in names:
            if worker is not None:
                worker.wait_for_layer_load(name)
            y = torch.tanh(y @ w)
        if worker is not None:
            worker.wait_for_save()
        sync()
        took = time.perf_counter() - t0
        errors = worker.get_block_ids_with_load_errors() if worker is not None else set()
        if worker is not None:
            worker.clear_connector_metadata()
        return took, errors

    results = {}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # a killed run still stops its node (finally below)
    node, address = gpu_bench.start_node(f"{need >> 20}MiB")
    try:
        candidates = []
        for layout in args.layouts.split(","):
            model = f"overlap-{layout}-{uuid.uuid4().hex[:8]}"
            with KvStore(address, request_timeout=60) as s:   # the save, once per layout
                w_save = connector(KVConnectorRole.WORKER, s, src, kvasir_layout=layout)
                sched = connector(KVConnectorRole.SCHEDULER, s, None, kvasir_layout=layout)
                _, meta = meta_for(sched, "save")
                forward(w_save, meta)
                assert w_save.stats["blocks_save_failed"] == 0, w_save.stats
            for transport in args.transports.split(","):
                for asyn in ("false", "true"):
                    candidates.append((layout, model, transport, asyn))
        dst = {n: torch.zeros(shape, dtype=torch.float16, device=args.device) for n in names}
        # One store per transport for the whole run, as a vLLM worker keeps its own: its first load maps the node's
        # arena (and registers it with CUDA), a once-per-process cost that a warm-up repeat (not timed) takes.
        stores = {t: KvStore(address, transport=t, request_timeout=60) for t in args.transports.split(",")}
        ss = KvStore(address, request_timeout=60)
        opened = [*stores.values(), ss]
        workers = {}
        for rep in range(-1, args.repeats):
            if rep >= 0:
                results.setdefault(("compute only",), []).append(forward(None, None)[0])
            for layout, model, transport, asyn in candidates:
                for t in dst.values():
                    t.zero_()
                key = (layout, transport, asyn)
                if key not in workers:   # one scheduler and worker per candidate, across steps, as in vLLM
                    workers[key] = (connector(KVConnectorRole.SCHEDULER, ss, None, kvasir_layout=layout),
                                    connector(KVConnectorRole.WORKER, stores[transport], dst, kvasir_layout=layout,
                                              kvasir_async_load=asyn))
                sched, worker = workers[key]
                n, meta = meta_for(sched, f"load-{rep}")
                assert n == args.blocks * BLOCK, (n, args.blocks * BLOCK)
                took, errors = forward(worker, meta)
                assert not errors, errors
                if rep == args.repeats - 1:
                    for name in names:
                        assert torch.equal(src[name][:, :args.blocks], dst[name][:, :args.blocks]), name
                if rep >= 0:
                    results.setdefault((layout, transport, asyn), []).append(took)
    finally:
        for _, worker in locals().get("workers", {}).values():
            worker.shutdown()   # stops its I/O thread; the stores it was given are closed below
        for s in locals().get("opened", []):
            s.close()
        node.terminate()
        node.wait(timeout=30)

    base = statistics.median(results[("compute only",)])
    print(f"\n{args.layers} layers, {args.blocks} blocks of {per_block >> 10} KiB ({args.blocks * per_block >> 20} MiB), "
          f"device {args.device}, stand-in layer {args.tokens}x{args.hidden}; medians of {args.repeats} in ms")
    print(f"{'compute only':<34}{base * 1e3:9.1f}")
    for key in results:
        if len(key) == 3:
            layout, transport, asyn = key
            med = statistics.median(results[key])
            label = f"{layout:<8}{transport:<5}{'per layer' if asyn == 'true' else 'load first':<12}"
            print(f"{label:<34}{med * 1e3:9.1f}   load beyond compute {max(med - base, 0) * 1e3:8.1f}")


if __name__ == "__main__":
    main()
