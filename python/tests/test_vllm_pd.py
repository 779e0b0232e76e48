"""Disaggregated prefill -> decode through the vLLM connector (kvasir_pd): a kv_producer engine in its own process
prefills a prompt with a small paged torch model; a kv_consumer engine here pulls the prompt's blocks straight from
the producer's kv caches through the transfer engine, computes only what is left and decodes. Its logits equal
those of one process computing everything. The producer holds the blocks under a lease that the consumer's
notification ends (or a timeout); when the producer is gone or no longer holds them, the consumer reads the same
blocks from the store, which the producer also wrote.

vLLM cannot be installed here: both engines are the connector's real scheduler and worker halves driven the way
vLLM drives them, over the stand-ins of vllm_standins.py (see there for the upstream files and commit)."""
import json
import os
import signal
import subprocess
import sys
import uuid

import pytest

torch = pytest.importorskip("torch")

from kvasir import KvStore  # noqa: E402
from kvasir.integrations.vllm import KVConnectorRole, KvasirConnector  # noqa: E402
from paged_decoder import PagedDecoder  # noqa: E402
from vllm_standins import (BS, CacheConfig, ForwardContext, KVCacheBlocks, KVCacheConfig,  # noqa: E402
                           KVTransferConfig, ModelConfig, NewRequestData, ParallelConfig, Request,
                           SchedulerOutput, VllmConfig, remembering)

HERE = os.path.dirname(os.path.abspath(__file__))
PRODUCER = os.path.join(HERE, "vllm_pd_producer.py")
NUM_BLOCKS = 32
PROMPT = [(17 * i + 5) % 97 for i in range(5 * BS + 2)]      # 5 full blocks and 2 tokens
PRODUCER_BLOCKS = [9, 2, 14, 30, 7, 21]                       # where the prefill engine put them
DECODER_BLOCKS = [3, 28, 11, 0, 19, 25, 6, 16, 12]           # the decode engine's own (room to decode)
STEPS = 6


class Producer:
    def __init__(self, node, model, *extra):
        self.engine_id = f"prefill-{uuid.uuid4().hex[:8]}"
        self.proc = subprocess.Popen(
            [sys.executable, PRODUCER, "--node", node.address, "--model", model, "--engine-id", self.engine_id,
             "--prompt", ",".join(map(str, PROMPT)), "--blocks", ",".join(map(str, PRODUCER_BLOCKS)),
             "--num-blocks", str(NUM_BLOCKS), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def event(self, what: str) -> dict:
        line = self.proc.stdout.readline()   # bounded: the producer exits after --max-seconds
        assert line, f"the producer ended before {what}: {self.proc.stderr.read()}"
        return json.loads(line)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def producers(node):
    start, stop_all = remembering(lambda model, *extra: Producer(node, model, *extra), Producer.stop)
    yield start
    stop_all()


def reference_logits():
    """Everything in one process: the whole prompt, then greedy decoding."""
    model = PagedDecoder(BS)
    caches = model.new_caches(NUM_BLOCKS)
    logits = model(PROMPT, 0, DECODER_BLOCKS, caches)
    return model.decode(logits, len(PROMPT), DECODER_BLOCKS, caches, STEPS)


def decode_engine(node, model, params):
    """The decode engine: schedules the request with the producer's kv_transfer_params, loads through the
    connector, computes the rest of the prompt and decodes. Returns (matched tokens, logits, worker stats)."""
    cfg = VllmConfig(KVTransferConfig(kv_role="kv_consumer", kv_connector_extra_config={
        "kvasir_pd": True, "kvasir_pd_timeout": 10}), CacheConfig(), ModelConfig(model), ParallelConfig())
    sched = KvasirConnector(cfg, KVConnectorRole.SCHEDULER, KVCacheConfig(NUM_BLOCKS),
                            store=KvStore(node.address, request_timeout=10))
    worker = KvasirConnector(cfg, KVConnectorRole.WORKER, KVCacheConfig(NUM_BLOCKS),
                             store=KvStore(node.address, request_timeout=10))
    try:
        m = PagedDecoder(BS)
        caches = m.new_caches(NUM_BLOCKS)
        worker.register_kv_caches(caches)
        req = Request("decode-req-1", PROMPT, kv_transfer_params=dict(params))
        n, load_async = sched.get_num_new_matched_tokens(req, 0)
        assert load_async is False
        sched.update_state_after_alloc(req, KVCacheBlocks(DECODER_BLOCKS), n)
        meta = sched.build_connector_meta(SchedulerOutput(
            scheduled_new_reqs=[NewRequestData(req.request_id, PROMPT, (DECODER_BLOCKS,), n)],
            num_scheduled_tokens={req.request_id: len(PROMPT) - n}))
        worker.bind_connector_metadata(meta)
        worker.start_load_kv(ForwardContext())
        assert worker.get_block_ids_with_load_errors() == set()
        assert worker.last_loaded_block_ids == {req.request_id: DECODER_BLOCKS[:n // BS]}
        worker.clear_connector_metadata()
        assert req.kv_transfer_params["do_remote_prefill"] is False   # a re-queued request reads the store
        logits = m(PROMPT[n:], n, DECODER_BLOCKS, caches)
        return n, m.decode(logits, len(PROMPT), DECODER_BLOCKS, caches, STEPS), dict(worker.stats)
    finally:
        worker.shutdown()
        sched.shutdown()


def assert_same_logits(got, want):
    assert got.shape == want.shape == (STEPS + 1, 97)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert got.argmax(-1).tolist() == want.argmax(-1).tolist()


def model_name():
    return f"pd-model-{uuid.uuid4().hex[:8]}"


def test_the_decoder_pulls_the_prefill_blocks_and_its_logits_equal_one_process(node, producers):
    model = model_name()
    p = producers(model, "--lease", "600")
    first = p.event("its kv_transfer_params")
    params = first["params"]
    assert first["delay_free"] is True and first["saved"] == 5
    assert params["do_remote_prefill"] is True and params["do_remote_decode"] is False
    assert params["remote_block_ids"] == PRODUCER_BLOCKS[:5] and params["remote_engine_id"] == p.engine_id
    assert params["remote_request_id"] == "prefill-req-1"

    n, logits, stats = decode_engine(node, model, params)
    assert n == 5 * BS
    assert stats["blocks_pulled"] == 5 and stats["pulls_failed"] == 0
    assert stats["blocks_loaded_local"] == 0                        # nothing came from the store
    want = reference_logits()
    assert_same_logits(logits, want)
    assert int(want[0].argmax()) == first["first_token"]            # the producer sampled the same first token
    freed = p.event("the blocks' release")
    # the lease is 600 s and the producer stepped for at most 120 s: only the decoder's DONE can have ended it
    assert freed == {"freed": "prefill-req-1", "after": freed["after"]} and freed["after"] < 120
    assert p.event("its exit") == {"done": True, "freed": True}


def test_a_dead_producer_is_replaced_by_the_store_with_the_same_logits(node, producers):
    model = model_name()
    p = producers(model)
    params = p.event("its kv_transfer_params")["params"]
    p.proc.send_signal(signal.SIGKILL)
    p.proc.wait(30)
    n, logits, stats = decode_engine(node, model, params)
    assert n == 5 * BS
    assert stats["blocks_pulled"] == 0 and stats["pulls_failed"] == 1
    assert stats["blocks_loaded"] == 5                             # from the store the producer wrote
    assert_same_logits(logits, reference_logits())


def test_an_unclaimed_lease_ends_by_timeout_and_a_late_decoder_never_reads_reused_blocks(node, producers):
    model = model_name()
    p = producers(model, "--lease", "0.5", "--scribble", "--stay", "--max-seconds", "60")
    params = p.event("its kv_transfer_params")["params"]
    assert "freed" in p.event("the lease's timeout")
    assert p.event("the blocks' reuse") == {"scribbled": PRODUCER_BLOCKS}
    # the producer is alive and answers, but no longer holds the blocks: the decoder must not read them
    n, logits, stats = decode_engine(node, model, params)
    assert n == 5 * BS
    assert stats["blocks_pulled"] == 0 and stats["pulls_failed"] == 1 and stats["blocks_loaded"] == 5
    assert_same_logits(logits, reference_logits())


def test_a_plain_request_on_a_producer_is_not_held():
    cfg = VllmConfig(KVTransferConfig(kv_role="kv_producer", kv_connector_extra_config={"kvasir_pd": True}),
                     CacheConfig(), ModelConfig("m"), ParallelConfig())

    class NoStore:
        def close(self):
            pass
    sched = KvasirConnector(cfg, KVConnectorRole.SCHEDULER, KVCacheConfig(NUM_BLOCKS), store=NoStore())
    assert sched.request_finished(Request("plain", PROMPT), (PRODUCER_BLOCKS,)) == (False, None)
    short = Request("short", PROMPT[:BS - 1], kv_transfer_params={"do_remote_decode": True})
    delay, params = sched.request_finished(short, ([4],))       # no full block: nothing to hold
    assert delay is False and params["remote_block_ids"] == []
    with pytest.raises(ValueError, match="engine_id"):
        KvasirConnector(VllmConfig(KVTransferConfig(kv_role="kv_producer", engine_id="",
                                                    kv_connector_extra_config={"kvasir_pd": True}),
                                   CacheConfig(), ModelConfig("m"), ParallelConfig()),
                        KVConnectorRole.SCHEDULER, KVCacheConfig(NUM_BLOCKS), store=NoStore())
