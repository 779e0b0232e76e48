"""The worker side of :class:`kvasir.integrations.vllm.KvasirConnector`: kv-cache registration, the per-layer-group
asynchronous loads (``start_load_kv`` queues, ``wait_for_layer_load`` waits for one layer group), the saves
(``save_kv_layer`` queues a layer group once its last layer is written, ``wait_for_save`` finishes the step),
load-error reporting and the kvasir_pd endpoints. A mixin of the connector; the layout and the threads are in
_vllm_layers.py, the block placement and data paths in _vllm_blockio.py."""

import logging
from typing import Any, Dict, List, Optional, Tuple

from ._vllm_blockio import BlockIO
from ._vllm_layers import Done, IoThread, UnitLoad, layers_per_value, units_of

logger = logging.getLogger("kvasir.vllm")

_TRUE = ("1", "true", "yes")


def cfg_get(kv_transfer_config, key, default=None):
    """A ``kv_connector_extra_config`` setting."""
    getter = getattr(kv_transfer_config, "get_from_extra_config", None)
    if getter is not None:
        return getter(key, default)
    extra = getattr(kv_transfer_config, "kv_connector_extra_config", None) or {}
    return extra.get(key, default)


class Worker(BlockIO):
    """Worker-side methods of the vLLM connector (see the module docstring)."""

    def _init_worker(self, ktc) -> None:
        self._layers: Dict[str, Any] = {}        # layer name -> kv-cache tensor
        self._layer_geom: Dict[str, tuple] = {}  # layer name -> (block_dim, block stride, lead offsets, slab bytes)
        self._per_value = layers_per_value(cfg_get(ktc, "kvasir_layout"))
        self._units: list = []                   # the values of a block (_vllm_layers.Unit), in layer order
        self._unit_of: Dict[str, int] = {}       # layer name -> index in _units
        self._async_load = str(cfg_get(ktc, "kvasir_async_load", "true")).lower() in _TRUE
        timeout = cfg_get(ktc, "kvasir_load_timeout") or cfg_get(ktc, "kvasir_request_timeout")
        self._io_timeout = 4 * float(timeout) if timeout else 120.0
        self._io = IoThread()
        self._load_plan: list = []                # this step's (req id, group, block id, hash) loads
        self._loads: Dict[int, UnitLoad] = {}     # unit index -> its loads this step
        self._save_plan: list = []                # this step's (group, block id, hash) saves
        self._saves: Dict[int, tuple] = {}        # unit index -> (pending, rows) queued this step
        self._load_errors: set = set()
        self._force_staging = str(cfg_get(ktc, "kvasir_force_staging", "")).lower() in _TRUE
        self.last_loaded_block_ids: Dict[str, List[int]] = {}
        self._local = not self._force_staging   # the arena path, until it is refused

    @classmethod
    def requires_piecewise_for_cudagraph(cls, extra_config) -> bool:
        """Loads are waited for inside the attention layers (``wait_for_layer_load``), which a full CUDA graph would
        skip: PIECEWISE mode keeps them, unless ``kvasir_async_load`` is off (loads finish in ``start_load_kv``)."""
        return str((extra_config or {}).get("kvasir_async_load", "true")).lower() in _TRUE

    # ---------------------------------------------------------------- registration

    def register_kv_caches(self, kv_caches):
        """Records each layer's kv-cache tensor (in the dict's order) and how a block lies in it."""
        num_blocks = getattr(self._kv_cache_config, "num_blocks", None) or cfg_get(self._kv_transfer_config,
                                                                                "kvasir_num_blocks")
        for name, tensor in kv_caches.items():
            self._register_layer(name, tensor, num_blocks)
        self._make_units()
        if self._pd and getattr(self._role, "name", "") == "WORKER":
            self._start_pd()

    def _make_units(self) -> None:
        self._units = units_of([self._layers_of(g) for g in range(len(self._groups))], self._per_value)
        self._unit_of = {name: i for i, u in enumerate(self._units) for name in u.names}

    def _start_pd(self) -> None:
        """The transfer-engine endpoint of a kvasir_pd worker: a producer serves its blocks, a consumer pulls."""
        from . import _vllm_pd  # noqa: PLC0415
        if any(t.device.type != "cpu" for t in self._layers.values()):
            logger.warning("kvasir: kvasir_pd moves host kv caches only; these are on %s, so decoders read the "
                           "store instead", next(iter(self._layers.values())).device)
            return
        layers = []
        for name, tensor in self._layers.items():
            _, bstride, leads, slab = self._layer_geom[name]
            es = tensor.element_size()
            span = 1 + sum((n - 1) * st for n, st in zip(tensor.shape, tensor.stride()) if n > 0)
            layers.append(_vllm_pd.Layer(name, tensor.data_ptr(), span * es, bstride * es, leads, slab))
        ktc = self._kv_transfer_config
        common = dict(interface=str(cfg_get(ktc, "kvasir_pd_interface", "lo")),
                      lanes=int(cfg_get(ktc, "kvasir_pd_lanes", 4)), auth_key=cfg_get(ktc, "kvasir_auth_key"))
        ranks = ((self._tp_rank, self._tp_size), (self._pp_rank, self._pp_size))
        if self._do_save:
            base = int(cfg_get(ktc, "kvasir_pd_port", 0))
            port = base + self._pp_rank * self._tp_size + self._tp_rank if base else 0
            self._pd_producer = _vllm_pd.Producer(
                layers, self._store, _vllm_pd.endpoint_key(self._engine_id, *ranks), port=port,
                lease_seconds=self._pd_lease, read_hold_seconds=2 * self._pd_timeout + 5, **common)
        if self._do_load:
            self._pd_consumer = _vllm_pd.Consumer(
                layers, self._store, lambda engine_id: _vllm_pd.endpoint_key(engine_id, *ranks),
                timeout=self._pd_timeout, **common)

    def bind_connector_metadata(self, connector_metadata) -> None:
        self._finish_step()   # a step whose hooks were not all called: nothing of it runs on
        super().bind_connector_metadata(connector_metadata)
        self._load_errors = set()  # reported for the forward pass in which they are detected
        self.last_loaded_block_ids = {}
        to_send = getattr(connector_metadata, "reqs_to_send", None)
        if self._pd_producer is not None and to_send:
            self._pd_producer.lease(to_send)   # vLLM now delays these blocks' free

    # ---------------------------------------------------------------- loads

    def start_load_kv(self, forward_context, **kwargs) -> None:
        """Queues this step's planned blocks, one read per layer group (value layout: _vllm_layers.py), and returns:
        over shared memory every group's copies are submitted at once, over the socket the I/O thread reads them in
        layer order. ``wait_for_layer_load`` waits for the group of its layer. With ``kvasir_async_load`` off every
        group is waited for here."""
        meta = self._connector_metadata
        if getattr(meta, "requests", None) is None or not self._layers:
            return
        pulled = self._pull(meta)
        plan = [(r.req_id, 0, bid, h) for r in meta.requests if r.req_id not in pulled for bid, h in r.load]
        plan += [(r.req_id, g, bid, h) for r in meta.requests for g, bid, h in r.load_groups]
        self._load_plan, self._loads = plan, {}
        for ui, unit in enumerate(self._units):
            rows = [i for i, p in enumerate(plan) if p[1] == unit.group]
            if rows:
                keys = [self.block_key(plan[i][3], group=unit.group, suffix=unit.suffix) for i in rows]
                self._loads[ui] = self._queue_load(unit, rows, keys, [plan[i][2] for i in rows])
        if not self._async_load:
            self._finish_loads()

    def _queue_load(self, unit, rows, keys, block_ids) -> UnitLoad:
        local = self._submit_local_load(unit, keys, block_ids)
        if local is not None:
            return UnitLoad(unit, rows, local[0], local=True, after=local[1])
        if self._on_host():
            return UnitLoad(unit, rows, self._io.submit(lambda: self._socket_load(unit, keys, block_ids)), local=False)
        return UnitLoad(unit, rows, self._io.submit(lambda: self._staged_fetch(unit, keys)), local=False,
                        after=lambda fetched: self._staged_place(unit, block_ids, fetched))

    def wait_for_layer_load(self, layer_name: str) -> None:
        """Waits for the layer group holding ``layer_name`` (its first layer waits, the others find it done). A group
        that failed is not raised: its blocks are reported by ``get_block_ids_with_load_errors``."""
        load = self._loads.get(self._unit_of.get(layer_name, -1))
        if load is not None:
            load.finish(self._io_timeout)

    def _finish_loads(self) -> None:
        """Waits for every layer group of this step's loads and settles each planned block: loaded when every group
        of it arrived whole, else a load error (vLLM recomputes from a request's first failed block)."""
        loads, self._loads = self._loads, {}
        plan, self._load_plan = self._load_plan, []
        if not plan:
            return
        ok = [True] * len(plan)
        local = [True] * len(plan)
        for load in loads.values():
            want = self._unit_bytes(load.unit)
            for row, got in zip(load.rows, load.finish(self._io_timeout)):
                ok[row] = ok[row] and got == want
                local[row] = local[row] and load.local
        failed_req = set()
        for (req_id, _, bid, _), good, loc in zip(plan, ok, local):
            loaded = self.last_loaded_block_ids.setdefault(req_id, [])
            if good and req_id not in failed_req:
                loaded.append(bid)
                self.stats["blocks_loaded"] += 1
                self.stats["blocks_loaded_local"] += loc
            elif not good:
                failed_req.add(req_id)
                self._load_errors.add(bid)
                self.stats["blocks_load_failed"] += 1

    def _pull(self, meta) -> set:
        """Requests whose blocks came straight from their producer (kvasir_pd); the others read the store."""
        done = set()
        for r in meta.requests:
            if r.remote_engine_id is None or not r.load or len(r.remote_block_ids) != len(r.load):
                continue
            if self._pd_consumer is not None and self._pd_consumer.pull(
                    r.remote_engine_id, r.remote_request_id or r.req_id,
                    [(bid, rid) for (bid, _), rid in zip(r.load, r.remote_block_ids)]):
                done.add(r.req_id)
                self.last_loaded_block_ids[r.req_id] = [bid for bid, _ in r.load]
                self.stats["blocks_pulled"] += len(r.load)
                self.stats["blocks_loaded"] += len(r.load)
            else:
                self.stats["pulls_failed"] += 1
        return done

    # ---------------------------------------------------------------- saves

    def save_kv_layer(self, layer_name: str, kv_layer, attn_metadata, **kwargs) -> None:
        """Records the layer's tensor if it was not registered; with host kv caches, queues the saves of the layer
        group that ``layer_name`` completes (its last layer), so they run while later layers compute."""
        if layer_name not in self._layers:
            self._register_layer(layer_name, kv_layer)
            self._make_units()
        ui = self._unit_of.get(layer_name)
        if ui is None or self._units[ui].names[-1] != layer_name or not self._is_host_cache():
            return
        self._queue_saves(only=ui)

    def _is_host_cache(self) -> bool:
        return all(t.device.type == "cpu" for t in self._layers.values())

    def _queue_saves(self, only: Optional[int] = None) -> None:
        meta = self._connector_metadata
        if getattr(meta, "requests", None) is None or not self._layers:
            return
        if not self._save_plan:   # rows: (group, block id, hash, index of the request)
            self._save_plan = [(0, bid, h, ri) for ri, r in enumerate(meta.requests) for bid, h in r.save]
            self._save_plan += [(g, bid, h, ri) for ri, r in enumerate(meta.requests) for g, bid, h in r.save_groups]
        plan = self._save_plan
        for ui, unit in enumerate(self._units):
            if (only is not None and ui != only) or ui in self._saves:
                continue
            rows = [i for i, p in enumerate(plan) if p[0] == unit.group]
            if not rows:
                continue
            runs = self._save_runs(unit, rows, plan, meta.requests)
            rows = [i for run in runs for i in run[4]]   # the order the codes come back in
            if self._is_host_cache():
                pending = self._io.submit(lambda u=unit, r=runs: self._save_runs_of(u, r))
            else:   # device tensors: copied out in this (the forward) thread, after the layers wrote them
                pending = Done(self._save_runs_of(unit, runs))
            self._saves[ui] = (pending, rows)

    def _save_runs(self, unit, rows, plan, requests) -> list:
        """``unit``'s writes for the plan's ``rows``: each request's run of consecutive blocks (group 0) as one chain
        continuing the block before it (the vLLM connector saves per request, issue 17), as (keys, block ids, chain
        parent's key or None, chain?, rows); everything else (other groups, runs with skipped blocks) in one unchained
        write, last."""
        runs, loose = [], ([], [], None, False, [])
        for ri in dict.fromkeys(plan[i][3] for i in rows):
            mine = [i for i in rows if plan[i][3] == ri]
            req = requests[ri]
            keys = [self.block_key(plan[i][2], group=unit.group, suffix=unit.suffix) for i in mine]
            bids = [plan[i][1] for i in mine]
            if unit.group == 0 and req.save_chain:
                parent = self.block_key(req.save_parent, group=0, suffix=unit.suffix) if req.save_parent else None
                runs.append((keys, bids, parent, True, mine))
            else:
                loose[0].extend(keys), loose[1].extend(bids), loose[4].extend(mine)
        return runs + ([loose] if loose[0] else [])

    def _save_runs_of(self, unit, runs) -> Tuple[List[int], bool]:
        """Writes ``runs`` (see :meth:`_save_runs`) one after the other: the codes in run order, and whether all went
        through the node's arena."""
        codes, via_arena = [], True
        for keys, bids, parent, chain, _ in runs:
            got, arena = self._save_unit(unit, keys, bids, chain, parent)
            codes += got
            via_arena = via_arena and arena
        return codes, via_arena

    def wait_for_save(self):
        """Queues the saves not queued yet (one write per layer group of the planned blocks, gathered straight from
        the kv caches), waits for all of them, and finishes this step's loads (so their errors are reported now)."""
        self._queue_saves()
        saves, self._saves = self._saves, {}
        plan, self._save_plan = self._save_plan, []
        ok = [True] * len(plan)
        local = [True] * len(plan)
        for pending, rows in saves.values():
            try:
                codes, via_arena = pending.wait(self._io_timeout)
            except Exception as ex:  # noqa: BLE001 - a save that did not end in time is a future miss
                logger.warning("kvasir: save failed: %s", ex)
                codes, via_arena = [-1] * len(rows), False
            for row, code in zip(rows, codes):
                ok[row] = ok[row] and code == 0
                local[row] = local[row] and via_arena
        for good, loc in zip(ok, local):
            self.stats["blocks_saved" if good else "blocks_save_failed"] += 1
            self.stats["blocks_saved_local"] += good and loc
        self._finish_loads()

    def _finish_step(self) -> None:
        if self._loads or self._saves or self._save_plan:
            self.wait_for_save()

    # ---------------------------------------------------------------- results, shutdown

    def get_finished(self, finished_req_ids):
        """Loads and saves end within their step; a kvasir_pd producer reports the requests whose blocks a decoder
        has pulled (or whose lease ran out), so vLLM frees them."""
        if self._pd_producer is None:
            return None, None
        return (self._pd_producer.finished() or None), None

    def get_block_ids_with_load_errors(self) -> set:
        self._finish_loads()
        return set(self._load_errors)

    def shutdown(self):
        self._finish_step()
        if not self._io.close(self._io_timeout):
            logger.warning("kvasir: the connector's I/O thread did not end within %g s", self._io_timeout)
        for endpoint in (self._pd_producer, self._pd_consumer):
            if endpoint is not None:
                endpoint.close()
        self._pd_producer = self._pd_consumer = None
        try:
            if self._owns_store:
                self._store.close()
            else:   # the caller's store outlives the connector: forget the kv caches it was told of
                for tensor in self._layers.values():
                    if tensor.device.type == "cpu":
                        self._store.unregister_buffer(tensor.data_ptr())
        except Exception:  # noqa: BLE001
            pass
