"""How :class:`kvasir.integrations.vllm.KvasirConnector`'s worker finds a block in the kv caches and moves it: the
layers' geometry, the (layer group, block id) -> memory pieces map, and the three data paths (the node's arena on
this host, in place over the socket for host tensors, a pinned staging copy for device tensors), each moving one layer
group's value (_vllm_layers.Unit) of many blocks. A mixin of the connector (it uses the connector's store, layers and
kv-cache groups); see vllm.py and _vllm_layers.py for the value layout."""

import logging
from typing import List, Tuple

from ..errors import UNAVAILABLE, KvasirError
from ..local_load import KeyNotLocalError
from ._vllm_layers import Unit

logger = logging.getLogger("kvasir.vllm")


def host_buffer(nbytes: int):
    """A CPU uint8 staging tensor, pinned when CUDA is there (faster device copies)."""
    import torch  # noqa: PLC0415
    t = torch.empty(nbytes, dtype=torch.uint8)
    return t.pin_memory() if torch.cuda.is_available() else t


class BlockIO:
    """Worker-side block placement and transfers of the vLLM connector."""

    def _register_layer(self, name, tensor, num_blocks=None) -> None:
        shape, stride, es = list(tensor.shape), list(tensor.stride()), tensor.element_size()
        if num_blocks is not None and int(num_blocks) in shape:
            bdim = shape.index(int(num_blocks))
        elif len(shape) >= 2 and shape[0] == 2 and len(shape) == 5:
            bdim = 1  # FlashAttention layout [2, num_blocks, block_size, heads, head_dim]
        else:
            bdim = 0  # [num_blocks, ...] (FlashInfer [num_blocks, 2, ...], MLA [num_blocks, bs, dim])
        slab = 1
        for d in range(len(shape) - 1, bdim, -1):
            if shape[d] != 1 and stride[d] != slab:
                raise ValueError(f"kvasir: layer {name}: a block's slice is not contiguous "
                                 f"(shape {shape}, stride {stride})")
            slab *= shape[d]
        leads = [0]
        for d in range(bdim):
            leads = [o + j * stride[d] for o in leads for j in range(shape[d])]
        self._layers[name] = tensor
        self._layer_geom[name] = (bdim, stride[bdim], [o * es for o in leads], slab * es)
        if tensor.device.type == "cpu":
            span = 1 + sum((s - 1) * st for s, st in zip(shape, stride) if s > 0)
            self._store.register_buffer(tensor.data_ptr(), span * es)

    def _layers_of(self, group: int) -> List[str]:
        """Names of the registered layers of kv-cache group ``group``, in registration order."""
        names = self._groups[group].layer_names
        return [n for n in self._layers if names is None or n in names]

    def _unit_bytes(self, unit: Unit) -> int:
        """Bytes of one block's value of ``unit`` (its layers' slices)."""
        return sum(len(self._layer_geom[n][2]) * self._layer_geom[n][3] for n in unit.names)

    def _pieces(self, unit: Unit, block_id: int) -> Tuple[List[int], List[int]]:
        """Addresses and sizes of block ``block_id``'s slices of ``unit``'s layers, in order."""
        addrs, sizes = [], []
        for name in unit.names:
            tensor = self._layers[name]
            _, bstride, leads, slab = self._layer_geom[name]
            base = tensor.data_ptr() + block_id * bstride * tensor.element_size()
            for off in leads:
                addrs.append(base + off)
                sizes.append(slab)
        return addrs, sizes

    def _all_pieces(self, unit: Unit, block_ids) -> Tuple[List[List[int]], List[List[int]]]:
        pieces = [self._pieces(unit, b) for b in block_ids]
        return [p[0] for p in pieces], [p[1] for p in pieces]

    def _on_host(self) -> bool:
        if self._force_staging:
            return False
        return all(t.device.type == "cpu" for t in self._layers.values())

    # ---------------------------------------------------------------- loads (one layer group's blocks)

    def _submit_local_load(self, unit: Unit, keys, block_ids):
        """``(LocalLoad, after)`` for ``keys`` straight from a node on this host; None when that path is unavailable
        or a block is not in the node's memory (the socket path then reports per-block misses). Host caches are
        filled in place (``after`` is None). Device caches get one DMA per value into a staging tensor on their
        device and ``after`` scatters it into the caches, one copy kernel per layer: a DMA per block and layer
        slice (tens of KiB each) ran at ~2 GB/s on an H100, one per value at the PCIe rate (docs/benchmarks.md)."""
        if not self._local:
            return None
        try:
            if self._on_host():
                return self._store.batch_get_into_multi_buffers_submit_local(keys, *self._all_pieces(unit, block_ids)), None
            import torch  # noqa: PLC0415
            size = self._unit_bytes(unit)
            device = self._layers[unit.names[0]].device
            staging = torch.empty((len(keys), size), dtype=torch.uint8, device=device)
            base = staging.data_ptr()
            load = self._store.batch_get_into_multi_buffers_submit_local(
                keys, [[base + i * size] for i in range(len(keys))], [[size]] * len(keys))
            return load, lambda lengths: self._scatter_staged(unit, block_ids, staging, lengths)
        except KeyNotLocalError:
            self._local = getattr(self._store, "transport", None) == "shm"   # a missing block, or no arena at all
        except (KvasirError, ValueError) as ex:
            logger.info("kvasir: loading through the node's arena failed (%s); using the socket", ex)
            self._local = False
        return None

    def _socket_load(self, unit: Unit, keys, block_ids) -> List[int]:
        """Lengths per key, read over the socket in place into host kv caches (the I/O thread runs it)."""
        return self._store.batch_get_into_multi_buffers(keys, *self._all_pieces(unit, block_ids))

    def _staged_fetch(self, unit: Unit, keys):
        """Reads ``keys`` into a host staging tensor (the I/O thread runs it): (results, staging, offsets, size)."""
        size = self._unit_bytes(unit)
        staging = host_buffer(max(size * len(keys), 1))
        base = staging.data_ptr()
        offsets = [i * size for i in range(len(keys))]
        self._store.register_buffer(base, staging.numel())
        try:
            results = self._store.batch_get_into(keys, [base + o for o in offsets], [size] * len(keys))
        finally:
            self._store.unregister_buffer(base)
        return results, staging, offsets, size

    def _staged_place(self, unit: Unit, block_ids, fetched) -> List[int]:
        """Copies the blocks that arrived whole from the staging tensor into the kv caches (the forward thread)."""
        results, staging, offsets, size = fetched
        device = self._layers[unit.names[0]].device
        rows = staging[:len(offsets) * size].view(len(offsets), size).to(device, non_blocking=True)
        return self._scatter_staged(unit, block_ids, rows, results)

    def _scatter_staged(self, unit: Unit, block_ids, staging, lengths) -> List[int]:
        """Copies the rows of ``staging`` (one value of ``unit`` per block, as _pieces lays it out) that arrived whole
        into the kv caches at ``block_ids``: one index_copy_ per layer on the current stream (the forward thread)."""
        import torch  # noqa: PLC0415
        size = staging.shape[1]
        whole = [i for i, n in enumerate(lengths) if n == size]
        if not whole:
            return lengths
        rows = staging if len(whole) == len(lengths) else staging[torch.tensor(whole, device=staging.device)]
        ids = torch.tensor([block_ids[i] for i in whole], dtype=torch.long, device=staging.device)
        off = 0
        for name in unit.names:
            tensor = self._layers[name]
            bdim, _, leads, slab = self._layer_geom[name]
            n = len(leads) * slab   # the layer's bytes of one block, as _unit_bytes counts them
            src = rows[:, off:off + n].view(tensor.dtype).view(len(whole), *tensor.select(bdim, 0).shape)
            tensor.index_copy_(bdim, ids, src.movedim(0, bdim))
            off += n
        return lengths

    def _gather_block(self, unit: Unit, flat, block_id: int) -> None:
        """Copies one block of ``unit``'s layers from the (device) kv caches into a flat uint8 host tensor."""
        off = 0
        for name in unit.names:
            tensor = self._layers[name]
            part = tensor.select(self._layer_geom[name][0], block_id)
            n = part.numel() * tensor.element_size()
            flat[off:off + n].view(tensor.dtype).view(part.shape).copy_(part)
            off += n

    # ---------------------------------------------------------------- saves (one layer group's blocks)

    def _save_unit(self, unit: Unit, keys, block_ids, chain: bool = False, parent=None) -> Tuple[List[int], bool]:
        """Writes ``unit``'s value of each block: (codes per key, whether through the node's arena). ``chain``: the
        blocks are one chain (in order), continuing the stored key ``parent`` (None: from the prompt's first block).
        Never raises: a failed save is a future miss, not an engine error."""
        links = {"chain": True, "chain_parent": parent} if chain else {}
        try:
            if self._local:
                try:
                    return self._store.batch_put_from_multi_buffers_local(keys, *self._all_pieces(unit, block_ids), **links), True
                except KeyNotLocalError:
                    self._local = False
                except (KvasirError, ValueError) as ex:
                    logger.info("kvasir: saving through the node's arena failed (%s); using the socket", ex)
                    self._local = False
            if self._on_host():
                return self._store.batch_put_from_multi_buffers(keys, *self._all_pieces(unit, block_ids), **links), False
            return self._staged_save(unit, keys, block_ids, links), False
        except Exception as ex:  # noqa: BLE001
            logger.warning("kvasir: save failed: %s", ex)
            return [UNAVAILABLE] * len(keys), False

    def _staged_save(self, unit: Unit, keys, block_ids, links=None) -> List[int]:
        size = self._unit_bytes(unit)
        staging = host_buffer(max(size * len(keys), 1))
        for i, bid in enumerate(block_ids):
            self._gather_block(unit, staging[i * size:(i + 1) * size], bid)
        base = staging.data_ptr()
        self._store.register_buffer(base, staging.numel())
        try:
            return self._store.batch_put_from(keys, [base + i * size for i in range(len(keys))], [size] * len(keys), **(links or {}))
        finally:
            self._store.unregister_buffer(base)
