"""Cluster mode of :class:`kvasir.KvStore`: membership (Redis or a static list), routing, replicas.

A routed store places every key on its nodes by rendezvous hashing (:mod:`kvasir.placement`), sends
one request per node in parallel and puts the per-key results back in the caller's order. With
``replicas=R`` a put goes to the key's top R nodes (0 when any of them stored it), and gets and
exists try them in rank order until one has the key; a node that fails mid-batch only turns its
keys into retries on the next replica. The Redis layout is that of the .NET ``RedisClusterRegistry``
(docs/cluster.md), and the scripts are the same files (``registry_lua/*.lua``).

By responsibility: :mod:`kvasir._membership` (the registry and the view of live nodes), :mod:`kvasir._router`
(placement, per-node stores, replicas) and :mod:`kvasir._embedded` (the embedded node); this module joins them up
when a :class:`kvasir.KvStore` starts in cluster mode.
"""

import logging
import time

from ._embedded import EmbeddedNode
from ._membership import (_POLL, _READ, REGISTRY_RESET_GRACE, RedisMembership, StaticMembership, cluster_replicas,
                          connect_registry, redact, registry_script)
from ._router import Router
from .errors import KvasirError

_log = logging.getLogger("kvasir")

# The names this module held before it was split by responsibility (membership, router, embedded node): still
# importable from here.
__all__ = ["EmbeddedNode", "REGISTRY_RESET_GRACE", "RedisMembership", "Router", "StaticMembership", "cluster_replicas",
           "connect_registry", "redact", "registry_script", "start_cluster", "_POLL", "_READ"]


def start_cluster(store, cfg, capacity, data_plane_addr, client_id, poll, explicit_servers) -> None:
    """Makes ``store`` route over a cluster (KvStore's constructor, when a registry, several servers
    or an embedded node are configured): starts the embedded node if asked, follows the membership,
    and gives the store its Router. The embedded node is stopped again if joining fails."""
    if capacity is not None:
        key_hex = store._auth_key.hex() if store._auth_key else None
        store._embedded = EmbeddedNode(capacity, data_plane_addr, client_id, cfg["redis_url"], cfg["cluster"], key_hex)
    try:
        if cfg["redis_url"]:
            membership = RedisMembership(cfg["redis_url"], cfg["cluster"], poll, store.connect_timeout)
            if store._embedded is not None:
                # Its own record, at its own address: a predecessor with the same client_id may have left a live
                # record naming its old address, and routing this store's keys there fails them until the next poll.
                own = (store._embedded.node_id, store._embedded.addr)
                deadline = time.monotonic() + store.connect_timeout
                while all((n["id"], n["addr"]) != own for n in membership.nodes) and time.monotonic() < deadline:
                    time.sleep(0.02)
                    membership.refresh()
        else:
            # Without Redis an embedded node joins the servers given explicitly (or stands alone).
            listed = store.servers if (capacity is None or explicit_servers) else []
            membership = StaticMembership([f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in listed])
            if store._embedded is not None:
                membership.add({"id": store._embedded.node_id, "addr": store._embedded.addr})
    except BaseException:
        if store._embedded is not None:
            store._embedded.close()
        raise

    def open_store(addr, node_tls=False):
        if node_tls and store._tls is None:
            raise KvasirError(f"node {addr} requires TLS (its registry record says tls): set tls_ca (KVASIR_TLS_CA)")
        # The store's transport for every member: with "auto" (the default) a member on this host whose arena maps is
        # reached through shared memory, the others over TCP; with "shm" a member that cannot be mapped is unreachable
        # (its keys go to replicas), as in the .NET cluster client (docs/cluster.md).
        return type(store)(addr, store._auth_key.hex() if store._auth_key else None, store._mode,
                           connect_timeout=store.connect_timeout, request_timeout=store.request_timeout, verify_crc=store.verify_crc,
                           value_crc=store.value_crc, connections_per_node=store.connections_per_node,
                           stripe_bytes=store.stripe_bytes,
                           **(store._tls.options() if store._tls is not None else {}))

    settings = None
    if store.replicas is None:   # the cluster's setting (kvasir cluster set replicas=N), else 1
        try:
            settings = membership.settings() if isinstance(membership, RedisMembership) else None
            store.replicas = cluster_replicas(settings) if settings is not None else 1
        except BaseException:
            membership.close()
            if store._embedded is not None:
                store._embedded.close()
            raise
    store._router = router = Router(membership, store.replicas, open_store, store.replica_versions)
    store.hello = None
    if settings is not None:
        # the store did not say R: it follows the cluster's while it runs, re-read on every membership poll
        def follow(new_settings):
            replicas = cluster_replicas(new_settings)   # KvasirError for a bad value: the last good one is kept
            if replicas != router.replicas:
                _log.info("kvasir: cluster %s: %d replicas from now on (was %d; kvasir cluster set)", cfg["cluster"], replicas, router.replicas)
                router.replicas = store.replicas = replicas
        membership.follow_settings(settings, follow)
