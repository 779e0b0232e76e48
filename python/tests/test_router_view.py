"""The cluster router's per-node answers (``node_stats``, ``node_stores``) pair each node with its own store, even when
the membership changes while they are made. The membership here changes on every read, so each call sees a change
between any two reads it makes; stores are stand-ins that say which address they were opened for."""

from kvasir._router import Router


class _ChangingMembership:
    """Each read of ``nodes`` moves the membership on by one node: [a, b], then [b, c], then [c, d], ..."""

    def __init__(self):
        self.reads = 0
        self.error = None

    @property
    def nodes(self):
        self.reads += 1
        names = [chr(ord("a") + self.reads - 1), chr(ord("a") + self.reads)]
        return [{"id": n, "addr": f"{n}.example:7380"} for n in names]

    def wake(self):
        pass

    def no_node_line(self, fix):
        return None

    def close(self):
        pass


class _Store:
    def __init__(self, addr):
        self.addr = addr
        self.checksum_mismatches = 0

    def stats(self):
        return {"addr": self.addr}

    def close(self):
        pass


def _router():
    return Router(_ChangingMembership(), 1, lambda addr, tls: _Store(addr))


def test_node_stats_pairs_every_node_with_its_own_stats_across_a_membership_change():
    router = _router()
    try:
        for _ in range(3):
            answers = router.node_stats()
            assert answers and all(error is None for _, _, error in answers)
            assert [(node["addr"], stats["addr"]) for node, stats, _ in answers] == \
                [(node["addr"], node["addr"]) for node, _, _ in answers]
    finally:
        router.close()


def test_node_stores_pairs_every_node_with_its_own_store_across_a_membership_change():
    router = _router()
    try:
        for _ in range(3):
            pairs = router.node_stores()
            assert pairs and [store.addr for _, store in pairs] == [node["addr"] for node, _ in pairs]
    finally:
        router.close()
