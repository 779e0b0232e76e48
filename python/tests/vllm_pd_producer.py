"""The prefill side of test_vllm_pd.py, as its own process: a vLLM-shaped engine (the connector's scheduler and
worker halves, over the stand-ins of vllm_standins.py) with the KvasirConnector as a kvasir_pd kv_producer. It
prefills one request marked ``do_remote_decode``, prints the kv_transfer_params vLLM would return, then steps the
way vLLM's engine does while blocks are held (build_connector_meta, bind, get_finished) and prints when the
connector lets vLLM free them. One JSON object per line on stdout."""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import torch  # noqa: E402

from kvasir import KvStore  # noqa: E402
from kvasir.integrations.vllm import KVConnectorRole, KvasirConnector  # noqa: E402
from paged_decoder import PagedDecoder  # noqa: E402
from vllm_standins import (BS, CacheConfig, ForwardContext, KVCacheBlocks, KVCacheConfig,  # noqa: E402
                           KVTransferConfig, ModelConfig, NewRequestData, ParallelConfig, Request,
                           SchedulerOutput, VllmConfig)


def emit(**event):
    print(json.dumps(event), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--engine-id", required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--blocks", required=True)
    ap.add_argument("--num-blocks", type=int, default=32)
    ap.add_argument("--lease", type=float, default=600.0)
    ap.add_argument("--scribble", action="store_true", help="overwrite the blocks once vLLM may free them (reuse)")
    ap.add_argument("--stay", action="store_true", help="keep serving after the blocks were freed")
    ap.add_argument("--max-seconds", type=float, default=120.0)
    a = ap.parse_args()
    prompt, blocks = [int(t) for t in a.prompt.split(",")], [int(b) for b in a.blocks.split(",")]

    cfg = VllmConfig(KVTransferConfig(kv_role="kv_producer", engine_id=a.engine_id, kv_connector_extra_config={
        "kvasir_pd": True, "kvasir_pd_lease_seconds": a.lease}), CacheConfig(), ModelConfig(a.model), ParallelConfig())
    sched = KvasirConnector(cfg, KVConnectorRole.SCHEDULER, KVCacheConfig(a.num_blocks),
                            store=KvStore(a.node, request_timeout=10))
    worker = KvasirConnector(cfg, KVConnectorRole.WORKER, KVCacheConfig(a.num_blocks),
                             store=KvStore(a.node, request_timeout=10))
    model = PagedDecoder(BS)
    caches = model.new_caches(a.num_blocks)
    worker.register_kv_caches(caches)

    def step(out):
        worker.bind_connector_metadata(sched.build_connector_meta(out))
        worker.start_load_kv(ForwardContext())
        logits = None
        if out.scheduled_new_reqs:
            logits = model(prompt, 0, blocks, caches)
            for name, tensor in caches.items():
                worker.save_kv_layer(name, tensor, None)
        worker.wait_for_save()
        sending, _ = worker.get_finished(set())
        worker.clear_connector_metadata()
        return logits, sending or set()

    req = Request("prefill-req-1", prompt, kv_transfer_params={"do_remote_decode": True})
    assert sched.get_num_new_matched_tokens(req, 0) == (0, False)
    sched.update_state_after_alloc(req, KVCacheBlocks(blocks), 0)
    logits, _ = step(SchedulerOutput(scheduled_new_reqs=[NewRequestData(req.request_id, prompt, (blocks,), 0)],
                                     num_scheduled_tokens={req.request_id: len(prompt)}))
    delay, params = sched.request_finished(req, (blocks,))
    emit(delay_free=delay, params=params, first_token=int(logits.argmax()), saved=worker.stats["blocks_saved"])

    start = time.monotonic()
    freed = False
    while time.monotonic() - start < a.max_seconds:
        _, sending = step(SchedulerOutput())
        if req.request_id in sending:
            freed = True
            emit(freed=req.request_id, after=round(time.monotonic() - start, 3))
            if a.scribble:
                for tensor in caches.values():
                    tensor[:, blocks].fill_(1e4)   # another request's KV now lives in these blocks
                emit(scribbled=blocks)
            if not a.stay:
                break
        time.sleep(0.02)
    emit(done=True, freed=freed)
    worker.shutdown()
    sched.shutdown()


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
