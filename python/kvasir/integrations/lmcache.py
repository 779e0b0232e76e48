"""LMCache integration: a storage plugin backend and a remote connector over :class:`kvasir.KvStore`.
(LMCache's classes or their stand-ins, and the chunk format with its I/O, live in _lmcache_io.py.)

Interfaces mirrored (read from LMCache/LMCache on GitHub, v1 API as of the 0.3.x/0.4.x line):

* ``lmcache/v1/storage_backend/abstract_backend.py`` (commit 2bbf1594...): ``StorageBackendInterface``
  (contains(key, pin=False), exists_in_put_tasks(key), batched_submit_put_task(keys, objs,
  transfer_spec=None), submit_prefetch_task(key), get_blocking(key), get_non_blocking(key),
  batched_get_blocking(keys), pin(key), unpin(key), remove(key, force=True),
  batched_remove(keys, force=True), close()), ``AllocatorBackendInterface.allocate(shape(s),
  dtype(s), fmt, eviction=True, busy_loop=True)`` and, in newer trees, ``StoragePluginInterface``
  whose constructor is ``(dst_device, config, metadata, local_cpu_backend, loop)`` and which adds
  ``get_allocator_backend()`` (see ``plugins/rust_remote_backend.py``, commit 805e36f0..., whose
  batched_submit_put_task also takes ``on_complete_callback``).
  Loaded by ``storage_plugins: [name]`` + ``extra_config: storage_plugin.<name>.module_path /
  .class_name``. The newest stored abstract_backend.py (with ``touch_cache`` / ``cancel_request``)
  adds ``get_non_blocking(key, location=None)`` and, for ``enable_async_loading``, async
  ``batched_async_contains(lookup_id, keys, pin=False) -> int`` and async
  ``batched_get_non_blocking(lookup_id, keys, transfer_spec=None) -> list[MemoryObj]`` (the loaded
  prefix). ``storage_backend/__init__.py`` (``storage_plugin_launcher``) constructs the class with
  ``(config=, dst_device=, metadata=, local_cpu_backend=, loop=)`` and does not pass the plugin's
  name: the backend finds it by looking for its own module/class among ``storage_plugins``.
* ``lmcache/v1/storage_backend/connector/base_connector.py`` (commit 78f6e7ee...): ``RemoteConnector``
  (async exists/get/put/list/close, exists_sync, support_ping/ping, support_batched_get/
  batched_get, support_batched_put/batched_put); newer trees add support_batched_contains/
  batched_contains (prefix hit count), support_batched_async_contains/
  batched_async_contains(lookup_id, keys, pin=False) and remove_sync.
  ``connector/__init__.py`` (commit e23f2bbc...): ``CreateConnector(url, loop, local_cpu_backend,
  config, metadata)`` asks every ``ConnectorAdapter(schema)`` ``can_parse(url)`` then
  ``create_connector(ConnectorContext)``; third-party connectors are registered with
  ``remote_storage_plugins: [name]`` + ``extra_config: remote_storage_plugin.<name>.module_path /
  .class_name`` (a ConnectorAdapter, or a RemoteConnector that LMCache's DynamicConnectorAdapter
  builds with ``(loop=, local_cpu_backend=, config=)`` only). The newest stored tree names plugins
  ``{type}`` or ``{type}.{instance}`` (``extract_plugin_type``), builds one ``RemoteBackend`` per
  ``remote_storage_plugins`` entry with URL ``plugin://<name>`` and ``ConnectorContext.plugin_name``,
  plus one more for a legacy ``remote_url``; ``remote_backend.py`` calls
  ``connector.batched_get_non_blocking(lookup_id, keys)`` when
  ``support_batched_get_non_blocking()``.

When ``lmcache`` is importable the real base classes are subclassed; otherwise the stand-ins below
(same method names and parameters) are used, so the module also works (and is tested) without it.

Stored value format (both classes): a fixed 96-byte little-endian header followed by the raw
tensor bytes, so any process can rebuild the MemoryObj (shape, dtype, memory format) from Kvasir
alone -- a freshly started engine reads chunks written by an earlier one::

    0  4s  magic  b"KVSR"          4  H  version (1)        6  H  header size (96)
    8  B   dtype code               9  B  memory format     10  B  ndim (<= 8)   11  x
   12  Q   payload length          20  8q dims (unused = 0)
   84  I   CRC-32 of bytes 0..83   88  8x reserved

Values are written with ``batch_put_from_multi_buffers([header, tensor memory])`` (no joining
copy) and read with ``batch_get_into_multi_buffers([header, tensor memory])`` when the shape is
known in advance (put by this instance, or read before); otherwise the value is fetched once
into a temporary buffer, the header parsed, a MemoryObj allocated and the payload copied in.
A value whose header does not parse (bad magic/version/CRC/dtype/format or a length mismatch)
is a miss, never an exception.
"""

import asyncio
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Dict, List, Optional
from urllib.parse import parse_qs


from .. import errors as E
from ..store import KvStore

logger = logging.getLogger(__name__)

__all__ = ["KvasirBackend", "KvasirConnector", "KvasirConnectorAdapter", "parse_kvasir_url",
           "encode_header", "decode_header", "HEADER_SIZE", "MemoryFormat"]

# ---------------------------------------------------------------- LMCache base classes / stand-ins

from ._lmcache_io import (  # noqa: F401 - the format helpers are part of this module's surface
    HEADER_SIZE,
    LookupPins,
    MemoryFormat,
    _AdapterBase,
    _BackendBase,
    _ConnectorBase,
    _KvasirCodecIO,
    _key_str,
    _ref_down,
    _ref_up,
    async_load_prefix,
    async_prefix_hits,
    decode_header,
    encode_header,
)


_SETTINGS = ("servers", "auth_key", "transport", "connect_timeout", "request_timeout")


def _store_kwargs_from_extra(extra: Optional[dict], prefixes=("kvasir.",)) -> dict:
    """KvStore arguments from LMCache ``extra_config``: for each prefix (the first wins), ``<prefix>url``
    (a ``kvasir://`` URL) and ``<prefix>servers``, ``auth_key``, ``transport``, ``connect_timeout``,
    ``request_timeout``. Prefixes are the plugin's own (``storage_plugin.<name>.`` /
    ``remote_storage_plugin.<name>.``), then ``kvasir.``; anything unset falls back to KvStore's own
    chain (KVASIR_CONFIG file, then KVASIR_* environment)."""
    kw: dict = {}
    extra = extra or {}
    for p in reversed(prefixes):
        url = extra.get(p + "url")
        if url:
            kw.update(parse_kvasir_url(str(url)))
        for name in _SETTINGS:
            v = extra.get(p + name)
            if v is not None and v != "":
                kw[name] = float(v) if name.endswith("timeout") else v
    return kw


def _plugin_names_of(cls, config, list_attr: str, prefix: str) -> List[str]:
    """The entries of ``config.<list_attr>`` whose ``<prefix><name>.module_path`` / ``.class_name`` load
    ``cls`` (LMCache's loaders do not tell a plugin the name it was loaded under)."""
    extra = getattr(config, "extra_config", None) or {}
    return [n for n in (getattr(config, list_attr, None) or [])
            if extra.get(f"{prefix}{n}.class_name") == cls.__name__
            and extra.get(f"{prefix}{n}.module_path") == cls.__module__]


def _own_plugin_name(cls, config, list_attr: str, prefix: str) -> Optional[str]:
    names = _plugin_names_of(cls, config, list_attr, prefix)
    if len(names) > 1:
        raise ValueError(f"{list_attr} loads {cls.__name__} more than once ({', '.join(sorted(names))}): LMCache does "
                         f"not tell a plugin its name, so their {prefix}<name>.* settings cannot be told apart; keep "
                         f"one entry, or give each its own subclass of {cls.__name__}")
    return names[0] if names else None


def _make_store(kw: dict) -> KvStore:
    servers = kw.pop("servers", None)
    auth_key = kw.pop("auth_key", None)
    transport = kw.pop("transport", None)
    return KvStore(servers, auth_key, transport, **kw)


def _allocator_fn(allocator):
    """``allocate(shape, dtype, fmt)`` over an LMCache allocator backend (LocalCPUBackend)."""
    def allocate(shape, dtype, fmt):
        if allocator is None:
            raise RuntimeError("no allocator backend (local_cpu_backend) was given")
        return allocator.allocate(shape, dtype, fmt)
    return allocate


# ---------------------------------------------------------------- storage plugin backend

class KvasirBackend(_BackendBase):
    """LMCache storage plugin backend keeping chunks in a Kvasir node.

    Constructed by LMCache's storage-plugin launcher as
    ``KvasirBackend(config=..., metadata=..., local_cpu_backend=..., loop=..., dst_device=...)``.
    The KvStore comes from ``extra_config`` (``kvasir.servers`` ...; see
    :func:`_store_kwargs_from_extra`) or the KVASIR_* environment; tests may pass ``store=``.
    ``memory_format_cls`` decodes the stored format number (default: LMCache's MemoryFormat).
    Puts run on one background thread (``put_workers``); ``exists_in_put_tasks`` reports them.
    """

    def __init__(self, config=None, metadata=None, local_cpu_backend=None, loop=None,
                 dst_device: str = "cpu", *, store: Optional[KvStore] = None, memory_format_cls=None,
                 put_workers: int = 1):
        try:
            super().__init__(dst_device=dst_device, config=config, metadata=metadata,
                             local_cpu_backend=local_cpu_backend, loop=loop)
        except TypeError:  # an older LMCache: StorageBackendInterface(dst_device) only
            super().__init__(dst_device=dst_device)
            self.config, self.metadata = config, metadata
            self.local_cpu_backend, self.loop = local_cpu_backend, loop
        extra = getattr(config, "extra_config", None) if config is not None else None
        self.plugin_name = _own_plugin_name(type(self), config, "storage_plugins", "storage_plugin.")
        prefixes = (f"storage_plugin.{self.plugin_name}.", "kvasir.") if self.plugin_name else ("kvasir.",)
        self._owns_store = store is None
        self.store = store if store is not None else _make_store(_store_kwargs_from_extra(extra, prefixes))
        self._io = _KvasirCodecIO(self.store, _allocator_fn(local_cpu_backend), memory_format_cls)
        self._lookup_pins = LookupPins(self.store)
        self._put_lock = threading.Lock()
        self._put_tasks: Dict[str, int] = {}
        self._executor = ThreadPoolExecutor(max_workers=max(1, put_workers), thread_name_prefix="kvasir-put")
        self._closed = False

    def __str__(self) -> str:
        return "KvasirBackend"

    # -- lookups --

    def contains(self, key, pin: bool = False) -> bool:
        k = _key_str(key)
        try:
            hit = self._io.exists([k])[0]
        except Exception as ex:  # noqa: BLE001
            logger.warning("kvasir: contains failed: %s", ex)
            return False
        if hit and pin:
            self.store.batch_pin([k])
        return hit

    def batched_contains(self, keys, pin: bool = False) -> int:
        """Number of leading keys present (newer StorageBackendInterface)."""
        ks = [_key_str(k) for k in keys]
        n = self._io.prefix_hits(ks)
        if pin and n:
            self.store.batch_pin(ks[:n])
        return n

    async def batched_async_contains(self, lookup_id: str, keys, pin: bool = False) -> int:
        """Leading keys present; with ``pin`` they stay pinned until ``lookup_id`` is loaded or cancelled
        (LMCache calls this on every backend when ``enable_async_loading`` is on)."""
        return await async_prefix_hits(self._io, self._lookup_pins, lookup_id, keys, pin)

    async def batched_get_non_blocking(self, lookup_id: str, keys, transfer_spec: Any = None) -> list:
        """The MemoryObjs of the leading keys that load (stops at the first miss); drops the lookup's pins."""
        return await async_load_prefix(self._io, self._lookup_pins, lookup_id, keys)

    def cancel_request(self, req_id: str) -> None:
        self._lookup_pins.release(req_id)

    def touch_cache(self) -> None:
        """The node keeps its own recency (every read touches): nothing to do."""

    def exists_in_put_tasks(self, key) -> bool:
        with self._put_lock:
            return _key_str(key) in self._put_tasks

    # -- puts --

    def batched_submit_put_task(self, keys, objs, transfer_spec=None, on_complete_callback=None):
        """Queues the puts; returns a list of Futures (one per queued batch) or None."""
        todo_k, todo_o = [], []
        run = True   # the queued keys are a run of ``keys`` (one request's chunks in order): written as a chain
        with self._put_lock:
            for key, obj in zip(keys, objs):
                k = _key_str(key)
                if k in self._put_tasks:
                    run = run and not todo_k
                    continue
                self._put_tasks[k] = 1
                _ref_up(obj)
                todo_k.append(key)
                todo_o.append(obj)
        if not todo_k:
            return None
        return [self._executor.submit(self._do_put, todo_k, todo_o, on_complete_callback, run)]

    def _do_put(self, keys, objs, on_complete_callback, chain: bool = False) -> List[int]:
        ks = [_key_str(k) for k in keys]
        try:
            codes = self._io.put(ks, objs, chain)
            for k, c in zip(ks, codes):
                if c != E.OK:
                    logger.warning("kvasir: put %s failed: %s", k, E.code_name(c))
            if on_complete_callback is not None:
                for key, c in zip(keys, codes):
                    if c == E.OK:
                        try:
                            on_complete_callback(key)
                        except Exception as ex:  # noqa: BLE001
                            logger.warning("kvasir: on_complete_callback failed: %s", ex)
            return codes
        finally:
            with self._put_lock:
                for k in ks:
                    self._put_tasks.pop(k, None)
            for o in objs:
                _ref_down(o)

    # -- gets --

    def submit_prefetch_task(self, key) -> bool:
        return self.contains(key)

    def get_blocking(self, key):
        return self._io.get([_key_str(key)])[0]

    def batched_get_blocking(self, keys):
        return self._io.get([_key_str(k) for k in keys])

    def get_non_blocking(self, key, location: Optional[str] = None) -> Optional[Future]:
        """``location`` (newer LMCache) names a storage tier; this backend has one, so it is ignored."""
        if not self.contains(key):
            return None
        return self._executor.submit(self.get_blocking, key)

    # -- pins / removal --

    def pin(self, key) -> bool:
        return self.store.batch_pin([_key_str(key)])[0] == E.OK

    def unpin(self, key) -> bool:
        return self.store.batch_unpin([_key_str(key)])[0] == E.OK

    def remove(self, key, force: bool = True) -> bool:
        k = _key_str(key)
        self._io.forget(k)
        return self.store.remove(k) == E.OK

    def batched_remove(self, keys, force: bool = True) -> int:
        ks = [_key_str(k) for k in keys]
        for k in ks:
            self._io.forget(k)
        return sum(1 for c in self.store.batch_remove(ks) if c == E.OK) if ks else 0

    def get_allocator_backend(self):
        return self.local_cpu_backend

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True)
        self._lookup_pins.release_all()
        if self._owns_store:
            self.store.close()


# ---------------------------------------------------------------- remote connector

def _is_kvasir_plugin(netloc: str) -> bool:
    """``kvasir`` or ``kvasir.<instance>`` (LMCache's plugin name form ``{type}.{instance}``)."""
    kind, dot, instance = netloc.lower().partition(".")
    return kind == "kvasir" and (not dot or bool(instance))


def parse_kvasir_url(url: str) -> dict:
    """KvStore keyword arguments for ``kvasir://host:port[,host:port][?auth_key=..&request_timeout=..
    &connect_timeout=..&transport=..]`` or ``plugin://kvasir[.<instance>]`` / ``kvasir://`` (servers and
    the rest from the plugin's extra_config, then ``KVASIR_CONFIG`` / ``KVASIR_SERVERS`` ..., by KvStore)."""
    if "://" not in url:
        raise ValueError(f"invalid Kvasir URL {url!r}: missing scheme")
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    netloc, _, tail = rest.partition("/")
    path, _, query = tail.partition("?")
    if "?" in netloc:
        netloc, _, query = netloc.partition("?")
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    kw: dict = {}
    if scheme == "plugin":
        if not _is_kvasir_plugin(netloc):
            raise ValueError(f"not a Kvasir plugin URL: {url!r} (expected plugin://kvasir or plugin://kvasir.<instance>)")
    elif scheme == "kvasir":
        if netloc:
            servers = []
            for entry in netloc.split(","):
                host, sep, port = entry.rpartition(":")
                if not sep or not host or not port.isdigit():
                    raise ValueError(f"invalid Kvasir URL {url!r}: expected host:port, got {entry!r}")
                servers.append(f"{host}:{int(port)}")
            kw["servers"] = ",".join(servers)
    else:
        raise ValueError(f"not a Kvasir URL: {url!r} (kvasir://host:port or plugin://kvasir)")
    for name in ("auth_key", "transport"):
        if params.get(name):
            kw[name] = params[name]
    for name in ("connect_timeout", "request_timeout"):
        if params.get(name):
            kw[name] = float(params[name])
    return kw


class KvasirConnector(_ConnectorBase):
    """LMCache ``RemoteConnector`` over Kvasir, for ``remote_url: kvasir://host:port`` (or
    ``plugin://kvasir`` with the servers from extra_config / the environment).

    Constructor as LMCache calls a plugin connector: ``(url, loop, local_cpu_backend, config)``
    (keyword arguments; ``metadata`` and a ready ``store`` are optional). ``put`` leaves the
    MemoryObj's reference count to the caller (LMCache's RemoteBackend releases it).
    """

    def __init__(self, url: Optional[str] = None, loop=None, local_cpu_backend=None, config=None,
                 metadata=None, *, store: Optional[KvStore] = None, memory_format_cls=None,
                 plugin_name: Optional[str] = None):
        try:
            super().__init__(config, metadata)  # newer RemoteConnector.__init__(config, metadata)
        except TypeError:
            super().__init__()
        if plugin_name is None and url is None:  # built by LMCache's DynamicConnectorAdapter: no url, no name
            plugin_name = _own_plugin_name(type(self), config, "remote_storage_plugins", "remote_storage_plugin.")
        if url is None:
            url = f"plugin://{plugin_name or 'kvasir'}"
        if plugin_name is None and url.lower().startswith("plugin://"):
            plugin_name = url[len("plugin://"):].split("/", 1)[0].split("?", 1)[0]
        self.url = url
        self.plugin_name = plugin_name
        self.loop = loop
        self.local_cpu_backend = local_cpu_backend
        self.config = config
        prefixes = (f"remote_storage_plugin.{plugin_name}.", "kvasir.") if plugin_name else ("kvasir.",)
        kw = _store_kwargs_from_extra(getattr(config, "extra_config", None) if config is not None else None,
                                      prefixes)
        kw.update(parse_kvasir_url(url))
        self.store_kwargs = dict(kw)
        self._owns_store = store is None
        self.store = store if store is not None else _make_store(kw)
        self._io = _KvasirCodecIO(self.store, _allocator_fn(local_cpu_backend), memory_format_cls)
        self._lookup_pins = LookupPins(self.store)

    def __repr__(self) -> str:
        return f"<KvasirConnector {self.store.host}:{self.store.port}>"

    @staticmethod
    async def _run(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    # existence
    def exists_sync(self, key) -> bool:
        return self._io.exists([_key_str(key)])[0]

    async def exists(self, key) -> bool:
        return await self._run(self.exists_sync, key)

    def support_batched_contains(self) -> bool:
        return True

    def batched_contains(self, keys) -> int:
        return self._io.prefix_hits([_key_str(k) for k in keys])

    def support_batched_async_contains(self) -> bool:
        return True

    async def batched_async_contains(self, lookup_id: str, keys, pin: bool = False) -> int:
        """Leading keys present; with ``pin`` they stay pinned until ``lookup_id`` is loaded."""
        return await async_prefix_hits(self._io, self._lookup_pins, lookup_id, keys, pin)

    def support_batched_get_non_blocking(self) -> bool:
        return True

    async def batched_get_non_blocking(self, lookup_id: str, keys, transfer_spec: Any = None) -> list:
        """The MemoryObjs of the leading keys that load (RemoteBackend passes ``(lookup_id, keys)``)."""
        return await async_load_prefix(self._io, self._lookup_pins, lookup_id, keys)

    # get / put
    async def get(self, key):
        return (await self._run(self._io.get, [_key_str(key)]))[0]

    def support_batched_get(self) -> bool:
        return True

    async def batched_get(self, keys):
        return await self._run(self._io.get, [_key_str(k) for k in keys])

    def _put_sync(self, keys, objs, chain: bool = False) -> None:
        codes = self._io.put([_key_str(k) for k in keys], objs, chain)
        bad = [(_key_str(k), E.code_name(c)) for k, c in zip(keys, codes) if c != E.OK]
        if bad:
            logger.warning("kvasir: %d put(s) failed, first %s: %s", len(bad), *bad[0])

    async def put(self, key, memory_obj) -> None:
        await self._run(self._put_sync, [key], [memory_obj])

    def support_batched_put(self) -> bool:
        return True

    async def batched_put(self, keys, memory_objs) -> None:
        await self._run(self._put_sync, list(keys), list(memory_objs), True)   # one request's chunks, in order

    def remove_sync(self, key) -> bool:
        k = _key_str(key)
        self._io.forget(k)
        return self.store.remove(k) == E.OK

    async def list(self) -> List[str]:
        """Kvasir has no key listing (yet): always an empty list."""
        return []

    def support_ping(self) -> bool:
        return True

    async def ping(self) -> int:
        try:
            await self._run(self.store.ping, b"")
            return 0
        except Exception:  # noqa: BLE001
            return 1

    async def close(self) -> None:
        await self._run(self._lookup_pins.release_all)
        if self._owns_store:
            self.store.close()


class KvasirConnectorAdapter(_AdapterBase):
    """``ConnectorAdapter`` for ``kvasir://`` and ``plugin://kvasir`` URLs (LMCache's
    ``remote_storage_plugin.<name>.class_name``)."""

    def __init__(self) -> None:
        super().__init__("kvasir://")

    def can_parse(self, url: str) -> bool:
        u = url.strip().lower()
        if u.startswith("kvasir://"):
            return True
        if not u.startswith("plugin://"):
            return False
        return _is_kvasir_plugin(u[len("plugin://"):].split("/", 1)[0].split("?", 1)[0])

    def create_connector(self, context) -> KvasirConnector:
        return KvasirConnector(url=context.url, loop=getattr(context, "loop", None),
                               local_cpu_backend=getattr(context, "local_cpu_backend", None),
                               config=getattr(context, "config", None),
                               metadata=getattr(context, "metadata", None),
                               plugin_name=getattr(context, "plugin_name", None))
