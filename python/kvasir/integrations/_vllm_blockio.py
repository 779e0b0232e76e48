"""How :class:`kvasir.integrations.vllm.KvasirConnector`'s worker finds a block in the kv caches and moves it: the
layers' geometry, the (group, block id) -> memory pieces map, and the three data paths (the node's arena on this host,
in place over the socket for host tensors, a pinned staging copy for device tensors). A mixin of the connector (it
uses the connector's store, layers and kv-cache groups); see vllm.py for the value layout."""

import logging
from typing import List, Optional, Tuple

from ..errors import KvasirError
from ..local_load import KeyNotLocalError

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
        self._group_bytes = [sum(len(self._layer_geom[n][2]) * self._layer_geom[n][3] for n, _ in self._layers_of(g))
                             for g in range(len(self._groups))]
        self._block_bytes = self._group_bytes[0]
        if tensor.device.type == "cpu":
            span = 1 + sum((s - 1) * st for s, st in zip(shape, stride) if s > 0)
            self._store.register_buffer(tensor.data_ptr(), span * es)

    def _layers_of(self, group: int):
        """(name, tensor) of the registered layers of kv-cache group ``group``, in registration order."""
        names = self._groups[group].layer_names
        return [(n, t) for n, t in self._layers.items() if names is None or n in names]

    def _pieces(self, block_id: int, group: int = 0) -> Tuple[List[int], List[int]]:
        addrs, sizes = [], []
        for name, tensor in self._layers_of(group):
            _, bstride, leads, slab = self._layer_geom[name]
            base = tensor.data_ptr() + block_id * bstride * tensor.element_size()
            for off in leads:
                addrs.append(base + off)
                sizes.append(slab)
        return addrs, sizes

    def _on_host(self) -> bool:
        if self._force_staging:
            return False
        return all(t.device.type == "cpu" for t in self._layers.values())

    def _local_load(self, keys, blocks) -> Optional[List[int]]:
        """Lengths per key, read straight from a node on this host into the kv caches (``blocks``: (group, block
        id) pairs); None when that path is unavailable or a block is not in the node's memory (the caller's path
        then reports per-block misses)."""
        if not self._local:
            return None
        dests = [self._pieces(bid, g) for g, bid in blocks]
        try:
            return self._store.batch_get_into_multi_buffers_submit_local(keys, [d[0] for d in dests], [d[1] for d in dests]).wait()
        except KeyNotLocalError:
            self._local = getattr(self._store, "transport", None) == "shm"   # a missing block, or no arena at all
        except (KvasirError, ValueError) as ex:
            logger.info("kvasir: loading through the node's arena failed (%s); using the socket", ex)
            self._local = False
        return None

    def _local_save(self, keys, blocks) -> Optional[List[int]]:
        """Codes per key, written straight from the kv caches (``blocks``: (group, block id) pairs) into a node on
        this host; None when that path is unavailable."""
        if not self._local:
            return None
        srcs = [self._pieces(bid, g) for g, bid in blocks]
        try:
            return self._store.batch_put_from_multi_buffers_local(keys, [s[0] for s in srcs], [s[1] for s in srcs])
        except KeyNotLocalError:
            self._local = False
        except (KvasirError, ValueError) as ex:
            logger.info("kvasir: saving through the node's arena failed (%s); using the socket", ex)
            self._local = False
        return None

    def _staging(self, blocks):
        """A host staging tensor for ``blocks`` ((group, block id) pairs), each block's offset and size in it."""
        sizes = [self._group_bytes[g] for g, _ in blocks]
        offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        return host_buffer(max(sum(sizes), 1)), offsets, sizes

    def _staged_load(self, keys, blocks) -> List[int]:
        staging, offsets, sizes = self._staging(blocks)
        base = staging.data_ptr()
        self._store.register_buffer(base, staging.numel())
        try:
            results = self._store.batch_get_into(keys, [base + o for o in offsets], sizes)
        finally:
            self._store.unregister_buffer(base)
        for (g, bid), r, o, n in zip(blocks, results, offsets, sizes):
            if r == n:
                self._copy_block(staging[o:o + n], bid, to_cache=True, group=g)
        return results

    def _copy_block(self, flat, block_id: int, to_cache: bool, group: int = 0) -> None:
        """Copies one block of kv-cache group ``group`` between a flat uint8 host tensor and the (device) kv caches."""
        off = 0
        for name, tensor in self._layers_of(group):
            bdim = self._layer_geom[name][0]
            part = tensor.select(bdim, block_id)
            n = part.numel() * tensor.element_size()
            host = flat[off:off + n].view(tensor.dtype).view(part.shape)
            if to_cache:
                part.copy_(host)
            else:
                host.copy_(part)
            off += n

    def _staged_save(self, keys, blocks) -> List[int]:
        staging, offsets, sizes = self._staging(blocks)
        for (g, bid), o, n in zip(blocks, offsets, sizes):
            self._copy_block(staging[o:o + n], bid, to_cache=False, group=g)
        base = staging.data_ptr()
        self._store.register_buffer(base, staging.numel())
        try:
            return self._store.batch_put_from(keys, [base + o for o in offsets], sizes)
        finally:
            self._store.unregister_buffer(base)
