"""What a :class:`kvasir.store.KvStore` tells about the cluster it routes over: whether it is one, its membership
polls' health, its nodes, a key's placement, per-node stats. A mixin of the store, using its router (None for a single
node or a static server list, which answer as a one-node cluster)."""

from typing import List, Optional

from .connection import _key_bytes


class ClusterView:
    """The cluster queries of :class:`kvasir.store.KvStore`."""

    @property
    def is_cluster(self) -> bool:
        return self._router is not None

    @property
    def membership_error(self) -> Optional[str]:
        """Why a cluster store's last membership poll failed: its registry unreachable (the reason names the Redis and
        the cause) or damaged. None while the polls succeed, and for a single node or a static server list; the store
        routes over the last membership it read meanwhile (docs/cluster.md). .NET: ``KvStore.MembershipError``."""
        return self._router.membership.error if self._router is not None else None

    @property
    def membership_failures(self) -> int:
        """Membership polls of a cluster store that failed since it connected, whatever the cause
        (:attr:`membership_error` names the last); 0 for a single node or a static server list. .NET:
        ``KvStore.MembershipFailures``."""
        return self._router.membership.failures if self._router is not None else 0

    @property
    def nodes(self) -> List[dict]:
        """The nodes keys are placed on now (records with at least ``id`` and ``addr``)."""
        if self._router is None:
            return [{"id": self.node_id, "addr": f"{self.host}:{self.port}"}]
        return self._router.nodes

    def placement(self, key, replicas: Optional[int] = None) -> List[str]:
        """Ids of the nodes holding ``key``'s copies, best first."""
        if self._router is None:
            return [self.node_id]
        return self._router.place(_key_bytes(key), replicas)

    def node_stats(self) -> list:
        """Per node: ``(record, stats dict or None, error or None)``."""
        if self._router is None:
            return [(self.nodes[0], self.stats(), None)]
        return self._router.node_stats()
