"""LMCache integration (KvasirBackend storage plugin, KvasirConnector remote connector) against a
real node, with real torch CPU tensors.

LMCache is not installed here, so the test uses minimal stand-ins mirroring the real signatures
it relies on: ``CacheEngineKey.to_string()`` (lmcache/utils.py), ``MemoryFormat`` (enum values of
lmcache/v1/memory_management.py), ``MemoryObjMetadata(shape, dtype, address, phy_size, ref_count,
pin_count, fmt)`` and ``MemoryObj.tensor`` / ``.metadata`` / ``.meta`` / ``ref_count_up/down``,
and an allocator backend with ``allocate(shape, dtype, fmt, eviction=True, busy_loop=True)``
(LocalCPUBackend / AllocatorBackendInterface).
"""
import asyncio
import enum
import time
import types
from dataclasses import dataclass

import pytest
import torch

from kvasir import KvStore
from kvasir.integrations import lmcache as L
from conftest import record_puts


class MemoryFormat(enum.Enum):  # stand-in, same values as lmcache.v1.memory_management.MemoryFormat
    UNDEFINED = 0
    KV_2LTD = 1
    KV_T2D = 2
    KV_2TD = 3
    BINARY = 4
    BINARY_BUFFER = 5
    KV_MLA_FMT = 6


@dataclass(frozen=True)
class CacheEngineKey:  # stand-in: fields and to_string() format of lmcache.utils.CacheEngineKey
    fmt: str
    model_name: str
    world_size: int
    worker_id: int
    chunk_hash: int

    def to_string(self):
        return f"{self.fmt}@{self.model_name}@{self.world_size}@{self.worker_id}@{self.chunk_hash:x}"


@dataclass
class MemoryObjMetadata:
    shape: torch.Size
    dtype: torch.dtype
    address: int
    phy_size: int
    ref_count: int
    pin_count: int = 0
    fmt: MemoryFormat = MemoryFormat.UNDEFINED


class MemoryObj:
    def __init__(self, tensor, fmt):
        self.tensor = tensor
        self.metadata = MemoryObjMetadata(tensor.shape, tensor.dtype, tensor.data_ptr(),
                                          tensor.numel() * tensor.element_size(), 1, 0, fmt)

    @property
    def meta(self):
        return self.metadata

    def ref_count_up(self):
        self.metadata.ref_count += 1

    def ref_count_down(self):
        self.metadata.ref_count -= 1


class Allocator:
    """Stand-in LocalCPUBackend: allocate(shape, dtype, fmt, eviction=True, busy_loop=True)."""

    def __init__(self):
        self.allocated = 0

    def allocate(self, shape, dtype, fmt=MemoryFormat.KV_2LTD, eviction=True, busy_loop=True):
        self.allocated += 1
        return MemoryObj(torch.empty(shape, dtype=dtype), fmt)


def key(i, model="m"):
    return CacheEngineKey("vllm", model, 1, 0, 0xABC000 + i)


def make_obj(shape, dtype, fmt=MemoryFormat.KV_2LTD, seed=0):
    g = torch.Generator().manual_seed(seed)
    return MemoryObj(torch.randn(shape, generator=g, dtype=torch.float32).to(dtype), fmt)


def same_bytes(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.view(-1).view(torch.uint8),
                                                                     b.view(-1).view(torch.uint8))


@pytest.fixture
def backend(node):
    b = L.KvasirBackend(config=types.SimpleNamespace(extra_config={"kvasir.servers": node.address,
                                                                   "kvasir.request_timeout": "10"}),
                        local_cpu_backend=Allocator(), dst_device="cpu", memory_format_cls=MemoryFormat)
    yield b
    b.close()


def put_all(b, keys, objs):
    futs = b.batched_submit_put_task(keys, objs)
    for f in futs or []:
        assert all(c == 0 for c in f.result(timeout=30))


CASES = [((2, 4, 16, 32), torch.float16, MemoryFormat.KV_2LTD),
         ((2, 4, 16, 32), torch.bfloat16, MemoryFormat.KV_2LTD),
         ((3, 7, 5), torch.float32, MemoryFormat.KV_T2D),
         ((1, 33, 64), torch.bfloat16, MemoryFormat.KV_MLA_FMT)]


def test_put_then_get_byte_exact(backend):
    keys = [key(i, "roundtrip") for i in range(len(CASES))]
    objs = [make_obj(s, d, f, seed=i) for i, (s, d, f) in enumerate(CASES)]
    put_all(backend, keys, objs)
    assert all(o.metadata.ref_count == 1 for o in objs)  # put took and released one reference
    assert not any(backend.exists_in_put_tasks(k) for k in keys)
    for k, o, (s, d, f) in zip(keys, objs, CASES):
        assert backend.contains(k)
        got = backend.get_blocking(k)
        assert got is not None and same_bytes(got.tensor, o.tensor)
        assert got.metadata.shape == torch.Size(s) and got.metadata.dtype == d and got.metadata.fmt == f
    many = backend.batched_get_blocking(keys + [key(999, "roundtrip")])
    assert many[-1] is None
    for got, o in zip(many, objs):
        assert same_bytes(got.tensor, o.tensor) and got.metadata.fmt == o.metadata.fmt
    assert backend.batched_contains(keys + [key(999, "roundtrip")] + keys) == len(keys)
    assert backend.get_allocator_backend() is backend.local_cpu_backend


def test_a_stores_new_chunks_are_written_as_one_chain(backend):
    # Issue 17 item 4: LMCache hands a store's new chunks of one request in token order; the backend declares them a
    # chain (no parent: LMCache does not name the chunk before them) so the node's chain-aware eviction can use it.
    calls = record_puts(backend.store, "batch_put_from_multi_buffers")
    keys = [key(i, "chain") for i in range(4)]
    objs = [make_obj((2, 4, 16, 32), torch.float16, seed=i) for i in range(4)]
    put_all(backend, keys, objs)
    assert calls == [([L._key_str(k) for k in keys], {"chain": True})]
    assert backend.batched_contains(keys) == 4


def test_fresh_backend_reads_earlier_chunks(node, backend):
    keys = [key(i, "restart") for i in range(len(CASES))]
    objs = [make_obj(s, d, f, seed=10 + i) for i, (s, d, f) in enumerate(CASES)]
    put_all(backend, keys, objs)
    # A new process: new KvStore, new backend, nothing remembered about shapes.
    store = KvStore(node.address, request_timeout=10)
    fresh = L.KvasirBackend(local_cpu_backend=Allocator(), dst_device="cpu", store=store,
                            memory_format_cls=MemoryFormat)
    try:
        got = fresh.batched_get_blocking(keys)
        for g, o in zip(got, objs):
            assert g is not None and same_bytes(g.tensor, o.tensor)
            assert g.metadata.fmt == o.metadata.fmt
        # second read goes through the zero-copy path (layout now known), same bytes
        again = fresh.batched_get_blocking(keys)
        assert all(same_bytes(g.tensor, o.tensor) for g, o in zip(again, objs))
    finally:
        fresh.close()
        store.close()


def test_miss_remove_pin_unpin(backend):
    k = key(1, "misc")
    assert backend.get_blocking(k) is None
    assert not backend.contains(k)
    assert backend.get_non_blocking(k) is None
    assert not backend.pin(k)
    o = make_obj((4, 8), torch.float16)
    put_all(backend, [k], [o])
    assert backend.pin(k) and backend.unpin(k)
    assert backend.contains(k, pin=True) and backend.unpin(k)
    fut = backend.get_non_blocking(k)
    assert same_bytes(fut.result(timeout=30).tensor, o.tensor)
    assert backend.remove(k)
    assert not backend.contains(k) and backend.get_blocking(k) is None
    assert not backend.remove(k)
    ks = [key(i, "bremove") for i in range(3)]
    put_all(backend, ks, [make_obj((2, 2), torch.float32, seed=i) for i in range(3)])
    assert backend.batched_remove(ks + [key(9, "bremove")]) == 3


def test_corrupted_header_is_a_miss(backend, store):
    k = key(1, "corrupt")
    o = make_obj((2, 3, 4), torch.float32)
    put_all(backend, [k], [o])
    raw = store.get(k.to_string())
    assert raw is not None and len(raw) == L.HEADER_SIZE + 2 * 3 * 4 * 4
    # garbage, a flipped header byte (CRC), a truncated payload, a too-short value
    bad_values = [b"\xff" * len(raw), raw[:8] + bytes([raw[8] ^ 1]) + raw[9:], raw[:-4], b"KVSR"]
    for bad in bad_values:
        assert store.put(k.to_string(), bad) == 0
        assert backend.get_blocking(k) is None  # known layout: zero-copy path
        fresh = L.KvasirBackend(local_cpu_backend=Allocator(), dst_device="cpu", store=store,
                                memory_format_cls=MemoryFormat)
        assert fresh.get_blocking(k) is None  # unknown layout: header-first path
        fresh.close()
    # a valid value of another shape under the same key is returned with its own shape
    other = make_obj((5, 5), torch.bfloat16, MemoryFormat.KV_2TD, seed=3)
    fresh = L.KvasirBackend(local_cpu_backend=Allocator(), dst_device="cpu", store=store,
                            memory_format_cls=MemoryFormat)
    put_all(fresh, [k], [other])
    got = backend.get_blocking(k)
    assert got is not None and same_bytes(got.tensor, other.tensor) and got.metadata.fmt == MemoryFormat.KV_2TD
    fresh.close()


def test_header_codec():
    h = L.encode_header((2, 3), torch.bfloat16, MemoryFormat.KV_T2D, 12)
    assert len(h) == L.HEADER_SIZE
    assert L.decode_header(h, MemoryFormat) == (torch.Size((2, 3)), torch.bfloat16, MemoryFormat.KV_T2D, 12)
    assert L.decode_header(L.encode_header((2, 3), torch.bfloat16, MemoryFormat.KV_T2D, 13), MemoryFormat) is None
    assert L.decode_header(h[:50], MemoryFormat) is None


def test_connector_url_parsing(monkeypatch):
    assert L.parse_kvasir_url("kvasir://10.0.0.1:7380") == {"servers": "10.0.0.1:7380"}
    assert L.parse_kvasir_url("kvasir://a:1,b:2/?request_timeout=3&auth_key=ab") == {
        "servers": "a:1,b:2", "request_timeout": 3.0, "auth_key": "ab"}
    assert L.parse_kvasir_url("plugin://kvasir") == {}
    for bad in ("redis://h:1", "kvasir://host", "plugin://other", "kvasir:/x"):
        with pytest.raises(ValueError):
            L.parse_kvasir_url(bad)
    ad = L.KvasirConnectorAdapter()
    assert ad.can_parse("kvasir://h:1") and ad.can_parse("plugin://kvasir") and not ad.can_parse("redis://h:1")


def test_connector_round_trips(node, monkeypatch):
    monkeypatch.setenv("KVASIR_SERVERS", node.address)  # plugin://kvasir takes its servers from env
    ctx = types.SimpleNamespace(url="plugin://kvasir", loop=None, local_cpu_backend=Allocator(),
                                config=None, metadata=None)
    conn = L.KvasirConnectorAdapter().create_connector(ctx)
    conn._io._fmt_cls = MemoryFormat
    direct = L.KvasirConnector(f"kvasir://{node.address}", local_cpu_backend=Allocator(),
                               memory_format_cls=MemoryFormat)
    assert (conn.store.host, conn.store.port) == (direct.store.host, direct.store.port)

    async def main():
        k = key(1, "conn")
        o = make_obj((2, 4, 8, 16), torch.float16)
        assert not await conn.exists(k) and await conn.get(k) is None
        await conn.put(k, o)
        assert await conn.exists(k) and conn.exists_sync(k)
        got = await direct.get(k)  # another connector (no remembered layout)
        assert same_bytes(got.tensor, o.tensor) and got.metadata.fmt == MemoryFormat.KV_2LTD
        ks = [key(i, "connb") for i in range(5)]
        objs = [make_obj((3, 5), d, seed=i) for i, d in
                enumerate([torch.float16, torch.bfloat16, torch.float32, torch.float16, torch.float32])]
        assert conn.support_batched_put() and conn.support_batched_get() and conn.support_batched_contains()
        await conn.batched_put(ks, objs)
        got = await direct.batched_get(ks + [key(99, "connb")])
        assert got[-1] is None and all(same_bytes(g.tensor, o.tensor) for g, o in zip(got, objs))
        assert conn.batched_contains(ks[:2] + [key(99, "connb")] + ks) == 2
        assert await conn.batched_async_contains("lookup-1", ks, pin=True) == 5
        assert await conn.ping() == 0 and await conn.list() == []
        assert conn.remove_sync(k) and not conn.exists_sync(k)
        await conn.close()
        await direct.close()

    asyncio.run(main())


# ---------------------------------------------------------------- newer upstream interface (issue 18)
# Mirrored from LMCache/LMCache lmcache/v1/storage_backend/abstract_backend.py (the version with
# StoragePluginInterface, touch_cache and cancel_request): get_non_blocking(key, location=None),
# async batched_async_contains(lookup_id, keys, pin=False) -> int and async
# batched_get_non_blocking(lookup_id, keys, transfer_spec=None) -> list[MemoryObj] (the loaded prefix);
# connector/__init__.py: ConnectorContext(url, loop, local_cpu_backend, config, metadata, plugin_name=None),
# extract_plugin_type("kvasir.primary") == "kvasir", DynamicConnectorAdapter builds a RemoteConnector class
# with (loop=, local_cpu_backend=, config=) only; remote_backend.py: RemoteBackend(plugin_name=p) connects to
# f"plugin://{p}" and calls connector.batched_get_non_blocking(lookup_id, keys) when
# connector.support_batched_get_non_blocking().

def pinned(store_like):
    return store_like.stats()["pinned_keys"]


def test_backend_async_lookup_then_load_prefix(backend):
    ks = [key(i, "async") for i in range(4)]
    objs = [make_obj((2, 3, 8), torch.bfloat16, seed=40 + i) for i in range(4)]
    put_all(backend, ks[:2] + ks[3:], objs[:2] + objs[3:])  # ks[2] missing: the prefix is 2 long
    before = pinned(backend.store)

    async def main():
        n = await backend.batched_async_contains("req-a", ks, pin=True)
        assert n == 2
        assert pinned(backend.store) == before + 2  # the hits stay pinned until loaded
        got = await backend.batched_get_non_blocking("req-a", ks[:n], transfer_spec=None)
        assert len(got) == 2 and all(same_bytes(g.tensor, o.tensor) for g, o in zip(got, objs))
        assert pinned(backend.store) == before  # loading the lookup released its pins
        # a load of a list with a miss in it returns the prefix before the miss only
        got2 = await backend.batched_get_non_blocking("req-b", ks)
        assert len(got2) == 2 and same_bytes(got2[1].tensor, objs[1].tensor)
        assert await backend.batched_async_contains("req-c", [key(99, "async")] + ks) == 0
        # a lookup that is never loaded: cancel_request releases its pins
        assert await backend.batched_async_contains("req-d", ks[:2], pin=True) == 2
        assert pinned(backend.store) == before + 2
        backend.cancel_request("req-d")
        assert pinned(backend.store) == before

    asyncio.run(main())
    fut = backend.get_non_blocking(ks[0], location=None)  # newer signature: location=None
    assert same_bytes(fut.result(timeout=30).tensor, objs[0].tensor)
    assert backend.get_non_blocking(ks[2], None) is None


def test_connector_batched_get_non_blocking(node):
    conn = L.KvasirConnector(f"kvasir://{node.address}", local_cpu_backend=Allocator(),
                             memory_format_cls=MemoryFormat)
    ks = [key(i, "connnb") for i in range(3)]
    objs = [make_obj((4, 4), torch.float16, seed=50 + i) for i in range(3)]

    async def main():
        await conn.batched_put([ks[0], ks[2]], [objs[0], objs[2]])
        before = pinned(conn.store)
        assert conn.support_batched_get_non_blocking()
        assert await conn.batched_async_contains("lk", ks, pin=True) == 1
        assert pinned(conn.store) == before + 1
        got = await conn.batched_get_non_blocking("lk", ks)  # RemoteBackend passes (lookup_id, keys)
        assert len(got) == 1 and same_bytes(got[0].tensor, objs[0].tensor)
        assert pinned(conn.store) == before
        await conn.close()

    asyncio.run(main())


def test_plugin_instance_names_and_their_settings(node, monkeypatch):
    monkeypatch.delenv("KVASIR_SERVERS", raising=False)
    # plugin://kvasir.<instance>: the URL RemoteBackend builds for remote_storage_plugins: ["kvasir.<instance>"]
    assert L.parse_kvasir_url("plugin://kvasir.primary") == {}
    ad = L.KvasirConnectorAdapter()
    assert ad.can_parse("plugin://kvasir.primary") and not ad.can_parse("plugin://kvasirx")
    with pytest.raises(ValueError):
        L.parse_kvasir_url("plugin://other.kvasir")
    cfg = types.SimpleNamespace(
        remote_storage_plugins=["kvasir.primary"],
        extra_config={"remote_storage_plugin.kvasir.primary.module_path": "kvasir.integrations.lmcache",
                      "remote_storage_plugin.kvasir.primary.class_name": "KvasirConnectorAdapter",
                      "remote_storage_plugin.kvasir.primary.servers": node.address,
                      "remote_storage_plugin.kvasir.primary.request_timeout": "7"})
    ctx = types.SimpleNamespace(url="plugin://kvasir.primary", loop=None, local_cpu_backend=Allocator(),
                                config=cfg, metadata=None, plugin_name="kvasir.primary")
    conn = ad.create_connector(ctx)
    assert f"{conn.store.host}:{conn.store.port}" == node.address and conn.store_kwargs["request_timeout"] == 7.0
    assert conn.exists_sync(key(1, "inst")) is False  # it talks to the node
    asyncio.run(conn.close())
    # the plugin's own url setting, and no plugin_name in the context (older LMCache): taken from the URL
    cfg2 = types.SimpleNamespace(remote_storage_plugins=["kvasir.b"],
                                 extra_config={"remote_storage_plugin.kvasir.b.url": f"kvasir://{node.address}"})
    conn2 = ad.create_connector(types.SimpleNamespace(url="plugin://kvasir.b", loop=None,
                                                      local_cpu_backend=Allocator(), config=cfg2, metadata=None))
    assert f"{conn2.store.host}:{conn2.store.port}" == node.address
    asyncio.run(conn2.close())
    # DynamicConnectorAdapter: class_name names the connector class itself, constructed without a url
    cfg3 = types.SimpleNamespace(remote_storage_plugins=["kvasir"],
                                 extra_config={"remote_storage_plugin.kvasir.module_path": "kvasir.integrations.lmcache",
                                               "remote_storage_plugin.kvasir.class_name": "KvasirConnector",
                                               "remote_storage_plugin.kvasir.servers": node.address})
    conn3 = L.KvasirConnector(loop=None, local_cpu_backend=Allocator(), config=cfg3)
    assert f"{conn3.store.host}:{conn3.store.port}" == node.address
    asyncio.run(conn3.close())


def test_storage_plugin_reads_its_own_settings(node):
    # storage_plugin_launcher constructs the class with (config=, dst_device=, metadata=, local_cpu_backend=, loop=)
    cfg = types.SimpleNamespace(storage_plugins=["kvasir"],
                                extra_config={"storage_plugin.kvasir.module_path": "kvasir.integrations.lmcache",
                                              "storage_plugin.kvasir.class_name": "KvasirBackend",
                                              "storage_plugin.kvasir.servers": node.address,
                                              "storage_plugin.kvasir.request_timeout": "9"})
    b = L.KvasirBackend(config=cfg, dst_device="cpu", metadata=None, local_cpu_backend=Allocator(), loop=None)
    assert f"{b.store.host}:{b.store.port}" == node.address and b.plugin_name == "kvasir"
    assert not b.contains(key(1, "splug"))
    b.close()
    # two instances of the class: LMCache does not tell a plugin its name, so refuse to guess
    two = types.SimpleNamespace(storage_plugins=["kvasir.a", "kvasir.b"], extra_config={
        **{f"storage_plugin.kvasir.{n}.module_path": "kvasir.integrations.lmcache" for n in "ab"},
        **{f"storage_plugin.kvasir.{n}.class_name": "KvasirBackend" for n in "ab"}})
    with pytest.raises(ValueError, match="storage_plugins"):
        L.KvasirBackend(config=two, dst_device="cpu", local_cpu_backend=Allocator())


def _yaml_blocks(text):
    out, block, inside = [], [], False
    for line in text.splitlines():
        if line.strip() == "```yaml":
            inside, block = True, []
        elif inside and line.strip() == "```":
            inside = False
            out.append("\n".join(block))
        elif inside:
            block.append(line)
    return out


def test_docs_lmcache_examples_build_one_remote_backend_each():
    """CreateStorageBackends builds one RemoteBackend per remote_storage_plugins entry AND one for
    remote_url: an example with both would write every chunk twice."""
    import os
    import re
    docs = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "connectors.md")
    with open(docs, encoding="utf-8") as f:
        blocks = [b for b in _yaml_blocks(f.read()) if "kvasir.integrations.lmcache" in b]
    assert len(blocks) >= 2
    for b in blocks:
        url = re.search(r"^remote_url:\s*(\S+)", b, re.M)
        plugins = re.search(r"^remote_storage_plugins:\s*\[(.*)\]", b, re.M)
        n_plugins = len([p for p in plugins.group(1).split(",") if p.strip()]) if plugins else 0
        remote_backends = n_plugins + (1 if url and url.group(1) not in ("null", "~") else 0)
        storage_plugins = re.search(r"^storage_plugins:", b, re.M)
        assert remote_backends == 1 or (storage_plugins and remote_backends == 0), b


def test_pins_of_a_lookup_never_loaded_are_released_after_max_age(backend):
    ks = [key(i, "stale") for i in range(2)]
    put_all(backend, ks, [make_obj((2, 2), torch.float16, seed=60 + i) for i in range(2)])
    before = pinned(backend.store)

    async def main():
        assert await backend.batched_async_contains("never-loaded", ks, pin=True) == 2
        assert pinned(backend.store) == before + 2
        backend._lookup_pins.max_age = 0.0   # the next pinning lookup sweeps every older one
        time.sleep(0.01)
        assert await backend.batched_async_contains("next", ks[:1], pin=True) == 1
        assert pinned(backend.store) == before + 1     # the stale lookup's two pins are gone, "next" holds one
        assert len(await backend.batched_get_non_blocking("next", ks[:1])) == 1
        assert pinned(backend.store) == before

    asyncio.run(main())
