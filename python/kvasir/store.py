"""KvStore: the Kvasir client object (Mooncake / redhare style API) over wire protocol v1.

Zero-copy raw-address I/O
-------------------------
The ``batch_*`` calls take raw addresses (``int``, e.g. ``numpy_array.ctypes.data`` or a
``torch`` tensor's ``data_ptr()``). Each address range must lie inside a region registered with
:meth:`KvStore.register_buffer` (``ptr <= addr`` and ``addr + size <= ptr + region_size``);
otherwise the call raises ``ValueError`` before anything is sent. The client builds memoryviews
straight over that memory (``ctypes``): PUT values are sent from it with ``socket.sendmsg``
(gather, no joining copy) and GET values are received into it with ``socket.recv_into``
(scatter across the pieces of a multi-buffer destination). Registration is bookkeeping only:
nothing is pinned or mapped, and the caller must keep the memory alive and unchanged during a call.

Results
-------
Per-key results are ``0`` (or, for GET-into calls, the value's length in bytes) on success and a
negative code otherwise: ``-(KvStatus)`` with the numbers of the .NET client, exported by
:mod:`kvasir.errors` (``NOT_FOUND=-1, VALUE_TOO_LARGE=-2, INVALID_KEY=-3, OUT_OF_MEMORY=-4,
BUFFER_TOO_SMALL=-16, TIMEOUT=-17, UNAVAILABLE=-18, PROTOCOL_ERROR=-19, CHECKSUM_MISMATCH=-20``). Keys may be ``str``
(UTF-8) or bytes-like. Keys that are empty or longer than the node's ``max_key_bytes`` get
``INVALID_KEY`` and values above its ``max_value_bytes`` get ``VALUE_TOO_LARGE`` without being sent.

Connection
----------
One connection per node, shared by every thread that calls the store: each call's requests are
pipelined on it with the other threads' (kvasir.connection: request ids, one reader thread that
receives each GET value straight into its caller's buffers); over TLS one request at a time. A call's
own requests go one after another, each sent once the previous one was answered, so its order holds
(a chained put's parent chunk is stored before its child; ALLOC before COMMIT; LEASE before RELEASE).
Batches larger than the node's ``max_batch_keys`` or
``max_meta_bytes`` (from its HELLO reply) are split into several requests. Replies are matched
by request id and opcode. A socket error or a timeout fails the keys of the requests in flight
(every thread's) and of the rest of each call (``UNAVAILABLE`` / ``TIMEOUT``), drops the connection, and
the next call reconnects (a failed reconnect answers ``UNAVAILABLE`` for its keys).
``request_timeout`` bounds each wait for the node to accept or deliver bytes (no progress for that
long fails the request), not the total duration of a large transfer.

Over TCP a GET or PUT request of at least twice ``stripe_bytes`` is striped: cut into contiguous runs of its keys, one
request per free connection to the node, up to ``connections_per_node``, the extra ones opened as such batches need
them (kvasir.stripes). A failed run fails its own keys and drops its own connection; the other runs are unaffected.
"""

import threading
from typing import List, Optional, Sequence, Union

from . import errors as E
from . import protocol as P
from .errors import KvasirAuthError, KvasirError, ProtocolError

__all__ = ["KvStore"]

_PUT_FIXED = 4 + 2 + P.MAX_KEY_BYTES + 4   # a PUT's count, room for a chain parent and a TTL (as the .NET client)

from .config import parse_servers, resolve_config
from . import keys as K
from . import arena_files, local_load, local_put, shm, stripes, tcp
from ._batch import IndexProxy as _IndexProxy, pairs as _pairs, same_length as _same_length, split as _split
from ._batch import split_keys as _split_keys, valid_positions as _valid_positions
from .connection import _Connection, _Failure, _key_bytes, _view
from .placement import chain_placement_key
from .store_cluster import ClusterView
from .store_keys import KeyOps, _optional_key
from .tls import TlsSettings
from .value_check import ValueCheck

# --- the store -------------------------------------------------------------------------------------


class KvStore(KeyOps, ClusterView):
    """Client of one Kvasir node.

    ``KvStore(servers=None, auth_key=None, transport="tcp", *, connect_timeout=5.0, request_timeout=30.0)``

    * ``servers``: ``"host:port"`` entries, a list or a comma-separated string. One entry: that
      node. Several: a static cluster, each key placed on its nodes by rendezvous hashing. A
      ``"redis://host:port"`` URL: same as ``redis_url``.
    * ``redis_url`` / ``cluster`` (default ``"default"``): discover the cluster's live nodes in
      Redis and follow joins and departures (needs the ``redis`` package). URL forms:
      ``redis://[[user]:password@]host:port[/db]``, ``rediss://…[?ca=/path/ca.pem]`` (TLS) and
      ``redis+sentinel://host:port,host:port/master[/db]`` (docs/cluster.md). ``replicas`` (default: the
      cluster's setting, ``kvasir cluster set replicas=N``, read when the store connects and again on every
      membership poll, so a running store follows a change; else 1):
      copies of each value; puts go to the key's top R nodes, gets/exists try them in order
      (docs/cluster.md). ``membership_poll`` (default 1 s): how often Redis is checked for changes.
      ``replica_versions`` (default True): with ``replicas`` >= 2, puts carry a version from this client's
      hybrid logical clock and gets ask every replica, keep the newest copy and write it back to replicas
      that had none or an older one (read repair; docs/cluster.md § Versions). False: gets take the first
      hit in rank order, enough for write-once keys.
      ``chain_placement`` (default False): chained puts go whole to their chain root's nodes, one
      request per replica (docs/cluster.md; read them back with the ``*_chain`` lookups).
    * ``capacity`` (e.g. ``"8GiB"``), ``data_plane_addr`` (default ``"127.0.0.1:0"``), ``client_id``:
      lend this process's host memory to the cluster as an embedded node, registered in Redis like
      any other (a ``kvasir serve`` child process bound to this one's lifetime: see
      :class:`kvasir.cluster.EmbeddedNode`).
    * ``auth_key``: the node's 32-byte key as 64 hex characters (or 32 raw bytes). With a key the
      client refuses a node that does not authenticate (mutual HMAC-SHA256); without one, a node
      that requires a key is refused. Either raises :class:`KvasirAuthError`.
    * ``transport`` (default ``"auto"``): ``"auto"`` moves payload bytes through the node's
      shared-memory arena when the node is on this host and its arena can be mapped (LEASE/RELEASE
      and ALLOC/COMMIT, docs/protocol.md § Shared memory), else uses TCP and logs why (logger
      ``kvasir``, INFO); ``"shm"`` raises :class:`KvasirError` with that reason instead; ``"tcp"``
      never tries. ``store.transport`` says which one is in use once the first call has decided.
      Chained puts go over TCP either way. ``batch_get_into_multi_buffers_submit_local`` and
      ``batch_put_from_local`` (numpy needed; GPU memory with torch and CUDA) need shared memory.
    * ``tls_ca`` (PEM file of the CA that signs the nodes' certificates, or ``"system"``), ``tls_server_name``
      (the name the node's certificate must carry; default the host connected to), ``tls_cert``/``tls_key``
      (this client's certificate, for nodes started with ``--tls-client-ca``): TLS to nodes started with
      ``--tls-cert``. Without them a TLS node refuses the connection saying it requires TLS; with them a
      node that does not speak TLS is refused. Shared memory still carries values on the node's host.
    * ``connect_timeout`` (default 5 s) bounds connecting plus HELLO/AUTH; ``request_timeout``
      (default 30 s) bounds each wait for progress on a request.
    * ``stripe_bytes`` (default 1 MiB on a host of 4 or more cores, else 0 = off) and ``connections_per_node``
      (default 4): over TCP, a GET or PUT request whose values (for a GET: whose destinations) total at least twice
      ``stripe_bytes`` goes as contiguous runs of its keys, about equal in bytes (a value is never split), one request
      per connection free at that moment (open and idle, or not yet opened; up to ``connections_per_node``, the shared
      one included; the others opened when first needed, and kept), sent in parallel: one request in flight moves its
      bytes over several streams and cores. Results per key as before; a run whose connection fails reports its own
      keys. Chained puts are striped where the node grants LATE_PARENT (each run continuing the last key of the run
      before it), else they go whole. Never striped: puts naming a key twice, ``get``, shared memory, a batch that finds
      one connection free (it goes whole over that one). Off below 4 cores: there it is a loss (0.7x in the .NET client). Details:
      :mod:`kvasir.stripes`; as the .NET ``KvStoreOptions.StripeBytes`` / ``ConnectionsPerNode``. A cluster store
      gives both to each member.
    * ``verify_crc`` (default False): check the CRC-32C the node sends with every GET hit (over TCP
      each piece as it arrives; over shared memory the node's CRC of the leased value against the copied
      bytes). A mismatch answers ``CHECKSUM_MISMATCH`` (-20) for that key alone (``get`` answers None: a
      miss; the destination holds nothing useful), the batch's other keys and the connection are
      unaffected (the reply was read whole), :attr:`checksum_mismatches` counts it and a WARNING is logged
      (logger ``kvasir``); in a cluster the key is read from its next replica. As the .NET client's
      ``KvStoreOptions.VerifyValueCrc`` / ``KvStatus.ChecksumMismatch``. Off by default because the
      pure-Python CRC runs at only ~10 MB/s. Asynchronous local loads
      (``batch_get_into_multi_buffers_submit_local``) are checked once their copies are done, before the leases
      are released: ``wait()`` answers ``CHECKSUM_MISMATCH`` for the key; a piece in GPU memory is checked by the
      arena bytes its DMA read (reading it back would cost a copy).
    * ``value_crc`` (default False): send each PUT value's CRC-32C with it (VALUE_CRC, when the node
      grants it), so the node stores it instead of checksumming on its receive path and checks it
      before the value is first read or written to a lower tier; a value whose bytes do not match
      is then a miss. Off by default for the same reason: computed here in pure Python (~10 MB/s).

    Configuration chain (later wins): the YAML file named by ``KVASIR_CONFIG`` (keys ``servers``,
    ``auth_key``, ``transport``, ``connect_timeout``, ``request_timeout``, ``connections_per_node``,
    ``stripe_bytes``, ...; needs PyYAML), then the environment (``KVASIR_SERVERS``, ``KVASIR_AUTH_KEY``,
    ``KVASIR_TRANSPORT``, ``KVASIR_CONNECT_TIMEOUT``, ``KVASIR_REQUEST_TIMEOUT``, ``KVASIR_CONNECTIONS_PER_NODE``,
    ``KVASIR_STRIPE_BYTES``: bytes or a size such as ``1MiB``), then the constructor arguments that are not
    ``None``: so an engine connector, which builds its store from this chain, is tuned without code. With nothing
    configured the server is ``127.0.0.1:7380``.

    The constructor connects: an unreachable node raises :class:`KvasirError` with the reason.
    """

    def __init__(self, servers: Union[str, Sequence[str], None] = None, auth_key: Union[str, bytes, None] = None,
                 transport: Optional[str] = None, *, connect_timeout: Optional[float] = None,
                 request_timeout: Optional[float] = None, verify_crc: bool = False, value_crc: bool = False,
                 redis_url: Optional[str] = None, cluster: Optional[str] = None, replicas: Optional[int] = None,
                 capacity=None, data_plane_addr: Optional[str] = None, client_id: Optional[str] = None,
                 membership_poll: float = 1.0, tls_ca: Optional[str] = None, tls_server_name: Optional[str] = None,
                 tls_cert: Optional[str] = None, tls_key: Optional[str] = None, replica_versions: bool = True,
                 chain_placement: bool = False, connections_per_node: Optional[int] = None,
                 stripe_bytes: Optional[int] = None):
        cfg = resolve_config(servers, auth_key, transport, connect_timeout, request_timeout, redis_url, cluster, replicas,
                             {"tls_ca": tls_ca, "tls_server_name": tls_server_name, "tls_cert": tls_cert, "tls_key": tls_key},
                             connections_per_node, stripe_bytes)
        connections_per_node = cfg["connections_per_node"]
        if connections_per_node is None:
            connections_per_node = stripes.DEFAULT_CONNECTIONS_PER_NODE
        stripe_bytes = cfg["stripe_bytes"]
        if stripe_bytes is None:
            stripe_bytes = stripes.default_stripe_bytes()
        stripes.validate(connections_per_node, stripe_bytes)
        mode = str(cfg["transport"]).strip().lower()
        if mode not in ("tcp", "auto", "shm"):
            raise KvasirError(f"unknown transport {cfg['transport']!r} (tcp, auto or shm)")
        if not membership_poll > 0:   # 0 would poll Redis in a busy loop (and back off from 0 after an error)
            raise KvasirError(f"membership_poll must be a positive number of seconds, got {membership_poll!r}")
        self._mode = mode
        self._transport = "tcp"
        self._transport_reason = None   # why "auto" uses TCP for this node (None: shared memory, or TCP was asked for)
        self._shm = None
        self._shm_conn = None   # the connection the transport was decided on
        via_redis = isinstance(cfg["servers"], str) and cfg["servers"].strip().startswith(("redis://", "rediss://", "redis+sentinel://"))
        self.servers = [] if via_redis else parse_servers(cfg["servers"])
        self.host, self.port = self.servers[0] if self.servers else ("", 0)
        key = cfg["auth_key"]
        try:
            self._auth_key = None if key is None or (isinstance(key, str) and not key.strip()) else P.parse_auth_key(key)
        except ValueError as ex:
            raise KvasirError(str(ex)) from None
        self._tls = TlsSettings.from_config(cfg)
        self.connect_timeout = cfg["connect_timeout"]
        self.request_timeout = cfg["request_timeout"]
        self._value_check = ValueCheck(verify_crc)
        self.value_crc = value_crc
        self._lock = threading.RLock()
        self._regions = {}
        self.last_error = ""
        self._closed = False
        self._conn: Optional[_Connection] = None
        self.connections_per_node = connections_per_node
        self.stripe_bytes = stripe_bytes
        self._stripes = stripes.Stripes(self._open_tcp, self._drop, connections_per_node, stripe_bytes)
        self._router = None
        self._embedded = None
        self.replicas = cfg["replicas"]
        self.replica_versions = bool(replica_versions)
        self.chain_placement = chain_placement
        if cfg["redis_url"] or len(self.servers) > 1 or capacity is not None:
            self._start_cluster(cfg, capacity, data_plane_addr or "127.0.0.1:0", client_id, membership_poll, servers is not None)
            return
        self.replicas = self.replicas or 1
        self._conn = self._open()
        self.hello = self._conn.hello

    def _start_cluster(self, cfg, capacity, data_plane_addr, client_id, poll, explicit_servers) -> None:
        from .cluster import start_cluster  # noqa: PLC0415
        start_cluster(self, cfg, capacity, data_plane_addr, client_id, poll, explicit_servers)

    # -- transport --

    @property
    def transport(self) -> str:
        """How values travel: "shm" (the node's shared-memory arena) or "tcp", decided on the first call ("tcp"
        until then). A cluster store answers for the members it has reached: "shm" when every one of them is reached
        through shared memory, "tcp" when every one over TCP (also before any was reached), "mixed" otherwise
        (docs/cluster.md § Transports)."""
        return self._router.transports()[0] if self._router is not None else self._transport

    @property
    def transport_reason(self) -> Optional[str]:
        """Why "auto" uses TCP for this node (None: shared memory, or TCP was asked for). A cluster store: each
        member reached over TCP with a reason, as ``ID: REASON`` joined by "; " (None when none fell back)."""
        return self._router.transports()[1] if self._router is not None else self._transport_reason

    # -- end-to-end checksum --

    @property
    def verify_crc(self) -> bool:
        """Whether GET hits are checked against the CRC-32C their node sent (the constructor's ``verify_crc``)."""
        return self._value_check.enabled

    @property
    def checksum_mismatches(self) -> int:
        """GET hits answered ``CHECKSUM_MISMATCH`` since the store connected (``verify_crc``): bytes that did not match
        their node's CRC-32C, each also logged once at WARNING (logger ``kvasir``). A cluster store counts every
        member's, including the members it has since stopped using. Never reset; 0 without ``verify_crc``."""
        if self._router is not None:
            return self._router.checksum_mismatches()
        return self._value_check.mismatches

    # -- lifecycle --

    def _open_tcp(self) -> _Connection:
        """A new connection to the node, for TCP only (a striped batch's extra connections)."""
        return _Connection(self.host, self.port, self._auth_key, self.connect_timeout, self.request_timeout, self._tls)

    def _open(self) -> _Connection:
        conn = self._open_tcp()
        if self._mode == "shm":   # forced: fail here, with the reason, rather than fall back
            self._negotiate(conn)
        return conn

    def _negotiate(self, conn):
        """The arena mapping to use with ``conn`` (None: TCP), decided on its first use."""
        with self._lock:   # once per connection; threads that share it wait for the decision
            self._negotiate_locked(conn)
            return self._shm if self._shm_conn is conn else None

    def _negotiate_locked(self, conn) -> None:
        """Decides the transport on a connection's first use: shared memory when the node is on this host
        and its arena can be mapped ("auto" falls back to TCP, logging why). A new connection to a node
        restarted at the same address talks to a new arena, whose LEASE and ALLOC offsets the old mapping
        would misread: the mapping is kept only while the node's SHM_INFO names the arena it maps."""
        if self._mode == "tcp" or conn is self._shm_conn:
            return
        if self._shm is not None:
            try:
                info = conn.call(P.Opcode.SHM_INFO, b"")
                same = self._shm.serves(info)
            except KvasirError:
                same = False
            if same:
                self._shm.grant(conn, info)
            if not same:
                self._let_go_locked()
        if self._shm is None:
            self._shm, self._transport_reason = shm.negotiate(conn, self.host, self._mode, self._transport_reason)
        self._shm_conn = conn
        self._transport = "shm" if self._shm is not None else "tcp"

    def _let_go_locked(self) -> None:
        """Unmaps the arena this store no longer uses and removes its files if their node is dead (the lock rule of
        :mod:`.arena_files`): a killed node's arena stays in /dev/shm, and its memory stays in use while anyone maps it."""
        mapping, self._shm = self._shm, None
        if mapping is not None:
            mapping.close()
            arena_files.try_remove_if_dead(mapping.path)

    def _let_go_if_node_gone_locked(self) -> None:
        """The node cannot be reached (a reconnect failed): unless its arena's lock is held (a live node, slow or stopped,
        keeps the mapping), unmaps the arena and removes its files if the node is dead. A node that answers again is
        mapped again on the next connection's first use."""
        if self._shm is not None and arena_files.try_remove_if_dead(self._shm.path) != arena_files.LIVE:
            self._shm.close()
            self._shm = None
            self._shm_conn = None

    def close(self) -> None:
        """Closes the connection (in a cluster: every node's, and stops an embedded node). Further calls raise :class:`KvasirError`."""
        with self._lock:
            if self._router is not None and not self._closed:
                self._router.close()
            if self._embedded is not None:
                self._embedded.close()
                self._embedded = None
            self._let_go_locked()
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        self._stripes.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        conn = self.__dict__.get("_conn")
        if conn is not None:
            conn.close()
        striped = self.__dict__.get("_stripes")
        if striped is not None:
            striped.close()
        if getattr(self, "_router", None) is not None or getattr(self, "_embedded", None) is not None:
            try:
                self.close()
            except Exception:  # noqa: BLE001 - never raise from a finalizer
                pass

    @property
    def max_value_bytes(self) -> int:
        return self.hello.max_value_bytes if self.hello is not None else P.DEFAULT_MAX_VALUE_BYTES

    @property
    def node_id(self) -> str:
        if self.hello is None:
            return self._embedded.node_id if self._embedded is not None else "cluster"
        return self.hello.node_id

    def _connection(self) -> _Connection:
        """The node's connection, opened (or reopened after a failure) here; shared by every thread."""
        with self._lock:   # one thread opens it; the others wait for it and share it
            self._check_open()
            if self._conn is not None and self._conn.broken:
                self._drop_locked(self._conn)
            if self._conn is None:
                try:
                    self._conn = self._open()
                except KvasirError as ex:
                    self._let_go_if_node_gone_locked()
                    raise _Failure(E.UNAVAILABLE, str(ex)) from None
                self.hello = self._conn.hello
            return self._conn

    def _drop(self, conn: Optional[_Connection] = None) -> None:
        """Closes ``conn`` (default: the current connection) and, if it is still the store's, forgets it; a
        connection another thread has already replaced is left to that one."""
        with self._lock:
            self._drop_locked(conn if conn is not None else self._conn)

    def _drop_locked(self, conn) -> None:
        if conn is None:
            return
        conn.close()
        if self._conn is conn:
            self._conn = None

    def _run_chunks(self, chunks, results: list, fn) -> None:
        """Runs ``fn(conn, start, end)`` per chunk, one after another; a failure marks that chunk and every later one."""
        for n, (start, end) in enumerate(chunks):
            conn = None
            try:
                conn = self._connection()
                fn(conn, start, end)
            except (_Failure, ProtocolError) as ex:
                code = ex.code if isinstance(ex, _Failure) else E.PROTOCOL_ERROR
                self._drop(conn)
                for s, e in chunks[n:]:
                    for i in range(s, e):
                        results[i] = code
                self.last_error = str(ex)
                return
            except BaseException:
                self._drop(conn)  # interrupted mid-frame: the stream is out of step
                raise

    # -- buffers --

    def register_buffer(self, ptr: int, size: int) -> int:
        """Records ``[ptr, ptr + size)`` as memory the batch calls may read and write. Returns 0.
        Registering the same ``ptr`` again replaces its size. Nothing is pinned or copied."""
        if not isinstance(ptr, int) or isinstance(ptr, bool) or ptr <= 0:
            raise ValueError(f"ptr must be a positive int address, not {ptr!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"size must be a non-negative int, not {size!r}")
        with self._lock:
            self._regions[ptr] = size
        return 0

    def unregister_buffer(self, ptr: int) -> int:
        """Forgets a region registered at ``ptr``: 0, or ``NOT_FOUND`` (-1) if none was."""
        with self._lock:
            return E.OK if self._regions.pop(ptr, None) is not None else E.NOT_FOUND

    def _checked_view(self, addr: int, size: int) -> memoryview:
        if not isinstance(addr, int) or not isinstance(size, int) or size < 0:
            raise ValueError(f"bad address/size ({addr!r}, {size!r})")
        for base, length in self._regions.items():
            if base <= addr and addr + size <= base + length:
                return _view(addr, size)
        raise ValueError(f"address range [{addr:#x}, +{size}) is not inside a registered buffer "
                         "(call register_buffer first)")

    # -- PUT --

    def _put(self, keys: list, values: list, chain: bool = False, chain_parent: Optional[bytes] = None,
             replicas: Optional[int] = None, chain_root: Optional[bytes] = None, chain_placement: Optional[bool] = None,
             ttl=None, versions: Optional[list] = None) -> List[int]:
        ttl_secs = None if ttl is None else K.ttl_seconds(ttl)
        if self._router is not None:
            self._check_open()
            by_chain = chain and keys and (self.chain_placement if chain_placement is None else chain_placement)
            placed_by = chain_placement_key(keys[0], chain_root, bool(chain_parent)) if by_chain else None
            return self._router.put(keys, values, chain, chain_parent, replicas, placed_by, ttl=ttl)
        """keys: bytes; values: list of memoryview lists (pieces). Returns per-key codes.

        ``chain``: key i's block continues key i-1's (PUT's CHAIN flag), and ``chain_parent`` is the
        stored key the first block continues. Chunks are sent in order, so a parent is stored before
        its child, except within a striped chunk, whose runs the node links whichever lands first
        (PARENT_FOLLOWS, LATE_PARENT nodes only). Chunks break at keys refused here; the next chunk's
        parent is the refused key (absent on the node, so no link: what the node itself would do).
        ``versions``: each value's version (PUT flag VERSION, docs/cluster.md § Versions), sent when the
        node granted the versions feature (over TCP: ALLOC carries no version)."""
        n = len(keys)
        results = [E.OK] * n
        self._check_open()
        hello = self.hello
        if ttl_secs is not None and not hello.features & P.FEATURE_TTL:
            raise KvasirError(f"node {hello.node_id} does not store a TTL (HELLO feature 0x2): upgrade the node or put without ttl")
        lengths = [sum(len(p) for p in pieces) for pieces in values]
        todo = []
        for i, (k, length) in enumerate(zip(keys, lengths)):
            if not 1 <= len(k) <= hello.max_key_bytes:
                results[i] = E.INVALID_KEY
            elif length > hello.max_value_bytes:
                results[i] = E.VALUE_TOO_LARGE
            else:
                todo.append(i)
        # a CRC is counted whether or not the connection sends one
        sizes = [P.put_entry_size(len(keys[i]), self.value_crc, versions is not None) for i in todo]
        if not chain:
            chunks = _split(sizes, hello, _PUT_FIXED)
        else:
            chunks, run_start = [], 0
            for pos in range(1, len(todo) + 1):
                if pos == len(todo) or todo[pos] != todo[pos - 1] + 1:
                    chunks += [(run_start + a, run_start + b) for a, b in _split(sizes[run_start:pos], hello, _PUT_FIXED)]
                    run_start = pos

        def parent_of(first: int) -> Optional[bytes]:
            if first == 0:
                return chain_parent or None
            previous = keys[first - 1]
            return previous if 1 <= len(previous) <= hello.max_key_bytes else None

        def run(conn, start, end):
            idx = todo[start:end]
            mapping = self._negotiate(conn)
            versioned = versions is not None and conn.versions
            # chains and versions need PUT's flags: they go over TCP; so do TTLs to a node without ARENA_PROOF
            if mapping is not None and not chain and not versioned and (ttl_secs is None or conn.arena_features):
                shm.alloc_chunk(conn, mapping, keys, values, lengths, results, idx, ttl_secs, self.value_crc)
                return
            # A chain is striped only where the node links late parents: each run but the first continues the last
            # key of the run before it, which may be stored after it on another connection (PARENT_FOLLOWS).
            if self._stripes.may_stripe(len(idx)) and (not chain or conn.late_parent):
                def send(c, part):   # versions go where the run's connection granted them
                    tcp.put_chunk(c, keys, values, lengths, results, part, chain=chain,
                                  parent=parent_of(part[0]) if chain else None, parent_follows=chain and part[0] != idx[0],
                                  value_crc=self.value_crc, ttl_seconds=ttl_secs,
                                  versions=versions if versions is not None and c.versions else None)
                # a put naming a key twice goes whole: runs are stored in any order, and the last value must win
                if self._striped(conn, idx, [lengths[i] for i in idx], send, results,
                                 lambda: not stripes.has_duplicate([keys[i] for i in idx])):
                    return
            tcp.put_chunk(conn, keys, values, lengths, results, idx, chain=chain, parent=parent_of(idx[0]) if chain else None,
                          value_crc=self.value_crc, ttl_seconds=ttl_secs, versions=versions if versioned else None)

        self._run_indexed(chunks, todo, results, run)
        return results

    def _striped(self, conn, idx, sizes, send, results, may=None) -> bool:
        """Sends the keys ``idx`` (``sizes``: their bytes) striped over the node's free connections when the request is
        large enough (and ``may()``, asked only then): True once every run has ended, each failed run's keys marked in
        ``results``; False, having sent nothing, when it goes whole on ``conn``."""
        if not self._stripes.worth(len(idx), sum(sizes)) or (may is not None and not may()):
            return False

        def fail(part, code, reason):
            for i in part:
                results[i] = code
            self.last_error = reason

        return self._stripes.run(conn, idx, sizes, send, fail)

    def _run_indexed(self, chunks, todo, results, fn) -> None:
        """Like _run_chunks, but chunks index into ``todo`` (positions of the keys sent)."""
        proxy = _IndexProxy(results, todo)
        self._run_chunks(chunks, proxy, fn)

    def put(self, key, value, ttl=None) -> int:
        """Stores ``value`` (any bytes-like) under ``key``: 0, or a negative code. ``ttl``: seconds until it expires
        (0 = never, even on a node with ``--default-ttl``; None = the node's default); ValueError outside 0..2^32-1."""
        return self._put([_key_bytes(key)], [[memoryview(value).cast("B")]], ttl=ttl)[0]

    def batch_put_from(self, keys, ptrs, sizes, chain: bool = False, chain_parent=None, replicas: Optional[int] = None,
                       chain_root=None, chain_placement: Optional[bool] = None) -> List[int]:
        """Stores ``sizes[i]`` bytes at address ``ptrs[i]`` under ``keys[i]``: 0 or negative per key.
        ``chain=True`` declares that each key's block continues the previous key's (``chain_parent``:
        the stored key the first one continues), so a prefix-aware node evicts chains from the tail.
        ``replicas``: in a cluster, copies of these values (default: the store's ``replicas``).
        ``chain_placement`` (default: the store's): in a cluster, a chained put goes whole to the nodes
        of its chain's first key, ``chain_root`` (default the first key; a put with ``chain_parent``
        must name it) — one request per replica."""
        _same_length(keys, ptrs, sizes)
        with self._lock:
            views = [[self._checked_view(p, s)] for p, s in zip(ptrs, sizes)]
        return self._put([_key_bytes(k) for k in keys], views, chain, _optional_key(chain_parent), replicas,
                         _optional_key(chain_root), chain_placement)

    def batch_put_from_multi_buffers(self, keys, addrs_per_key, sizes_per_key, chain: bool = False, chain_parent=None,
                                     replicas: Optional[int] = None, chain_root=None, chain_placement: Optional[bool] = None) -> List[int]:
        """Stores, per key, the concatenation of several pieces (``addrs_per_key[i][j]``,
        ``sizes_per_key[i][j]``), gathered without a joining copy: 0 or negative per key.
        ``chain`` / ``chain_parent`` / ``replicas`` / ``chain_root`` / ``chain_placement`` as in :meth:`batch_put_from`."""
        _same_length(keys, addrs_per_key, sizes_per_key)
        with self._lock:
            views = [[self._checked_view(a, s) for a, s in _pairs(addrs, sizes)]
                     for addrs, sizes in zip(addrs_per_key, sizes_per_key)]
        return self._put([_key_bytes(k) for k in keys], views, chain, _optional_key(chain_parent), replicas,
                         _optional_key(chain_root), chain_placement)

    # -- GET --

    def _get(self, keys: list, dests: list, versions: Optional[list] = None) -> list:
        """dests: per key a list of memoryview pieces, or None to allocate. Returns (codes, values).
        ``versions``: a list filled with each hit's version as the node reported it (0 when it reports none);
        the keys are then read over TCP (LEASE carries no version)."""
        if self._router is not None:
            self._check_open()
            return self._router.get(keys, dests)
        n = len(keys)
        results = [E.OK] * n
        allocated = [None] * n
        self._check_open()
        hello = self.hello
        todo = _valid_positions(keys, results, hello)
        chunks = _split_keys(todo, keys, hello)
        check = self._value_check

        def run(conn, start, end):
            idx = todo[start:end]
            mapping = self._negotiate(conn)
            if mapping is not None and not (versions is not None and conn.versions):
                shm.lease_chunk(conn, mapping, keys, dests, results, allocated, idx, check)
                return
            # a GET into values allocated on arrival goes whole: its sizes are not known
            if self._stripes.may_stripe(len(idx)) and all(dests[i] is not None for i in idx):
                def send(c, part):
                    tcp.get_chunk(c, keys, dests, results, allocated, part, check, versions)
                if self._striped(conn, idx, [sum(len(p) for p in dests[i]) for i in idx], send, results):
                    return
            tcp.get_chunk(conn, keys, dests, results, allocated, idx, check, versions)

        self._run_indexed(chunks, todo, results, run)
        return results, allocated

    def get(self, key) -> Optional[bytes]:
        """The value of ``key`` as bytes, or None when it is not stored (or, with ``verify_crc``, when the bytes
        received failed the CRC-32C check: a miss, counted in :attr:`checksum_mismatches`). Raises
        :class:`KvasirError` for any other failure (invalid key, node unavailable, timeout)."""
        results, values = self._get([_key_bytes(key)], [None])
        code = results[0]
        if code >= 0:
            return bytes(values[0])
        if code in (E.NOT_FOUND, E.CHECKSUM_MISMATCH):
            return None
        if code == E.UNAVAILABLE and self._router is not None:
            self._router.raise_if_no_node("get failed: UNAVAILABLE")
        raise KvasirError(f"get failed: {E.code_name(code)}" + (f" ({self.last_error})" if code <= E.TIMEOUT else ""))

    def batch_get_into(self, keys, ptrs, sizes) -> List[int]:
        """Reads each value into ``sizes[i]`` bytes at ``ptrs[i]``, received in place (no copy):
        the value's length (bytes past it untouched), or negative per key (``BUFFER_TOO_SMALL``
        when the value does not fit; the destination may then hold nothing useful)."""
        _same_length(keys, ptrs, sizes)
        with self._lock:
            views = [[self._checked_view(p, s)] for p, s in zip(ptrs, sizes)]
        return self._get([_key_bytes(k) for k in keys], views)[0]

    def batch_get_into_multi_buffers(self, keys, addrs_per_key, sizes_per_key) -> List[int]:
        """Reads each value scattered over several pieces, filled in order: the value's length or
        negative per key (``BUFFER_TOO_SMALL`` when the pieces together are too small)."""
        _same_length(keys, addrs_per_key, sizes_per_key)
        with self._lock:
            views = [[self._checked_view(a, s) for a, s in _pairs(addrs, sizes)]
                     for addrs, sizes in zip(addrs_per_key, sizes_per_key)]
        return self._get([_key_bytes(k) for k in keys], views)[0]

    # -- asynchronous local loads --

    def batch_get_into_multi_buffers_submit_local(self, keys, addrs_per_key, sizes_per_key):
        """Starts loading each value into its pieces (filled in order) straight from the local
        node's shared-memory arena and returns a :class:`kvasir.local_load.LocalLoad` at once
        (``is_done()``; ``wait()`` -> the value lengths, or with ``verify_crc`` ``CHECKSUM_MISMATCH`` for a value
        that failed the check). Pieces are host memory inside registered
        buffers or, with torch and CUDA, GPU memory: filled by DMA from the arena on a dedicated CUDA
        stream. Raises :class:`kvasir.local_load.KeyNotLocalError`, holding nothing, when the node is
        not reachable through shared memory or a key is not in its memory: fall back to
        :meth:`batch_get_into_multi_buffers` then (pieces may have been partly written). Needs numpy."""
        return local_load.submit_load(self, keys, addrs_per_key, sizes_per_key)

    def batch_put_from_local(self, keys, ptrs, sizes, chain: bool = False, chain_parent=None) -> List[int]:
        """Stores each value straight into the local node's shared-memory arena: ALLOC, one copy per
        value — a DMA from GPU memory (torch with CUDA) or a memcpy from a registered host buffer —
        then COMMIT. 0 or a negative code per key. Raises :class:`kvasir.local_load.KeyNotLocalError`
        when the node is not reachable through shared memory (use :meth:`batch_put_from`). Needs numpy. ``ptrs`` and
        ``sizes`` may be numpy integer arrays (taken as they are, no conversion per key).
        ``chain`` / ``chain_parent`` as in :meth:`batch_put_from` (sent with the COMMITs; a node without
        feature ``FEATURE_COMMIT_CHAIN`` stores the values unlinked)."""
        return local_put.put_local_single(self, keys, ptrs, sizes, chain, chain_parent)

    def batch_put_from_multi_buffers_local(self, keys, addrs_per_key, sizes_per_key, chain: bool = False,
                                           chain_parent=None) -> List[int]:
        """:meth:`batch_put_from_local` with each value gathered from several pieces (host or GPU
        memory), concatenated in order — e.g. one KV block's slices of every layer. With as many pieces for every key,
        ``addrs_per_key`` and ``sizes_per_key`` may be 2-D numpy integer arrays (a row per key)."""
        return local_put.put_local(self, keys, addrs_per_key, sizes_per_key, chain, chain_parent)

    def _release_leases(self, conn, meta: bytes, confirm: bool = False) -> bool:
        """RELEASE on ``conn`` if it is still this store's connection: lease ids belong to one
        connection, and a closed one has had its leases released by the node already — perhaps
        before the copies ended, so then this answers False. With ``confirm``, waits for the reply:
        False unless every lease was still held; without, nobody waits for the reply."""
        with self._lock:
            if self._conn is not conn or conn.broken:
                return False
        try:
            if not confirm:
                conn.send_deferred(P.Opcode.RELEASE, meta)
                return True
            return all(st == P.WireStatus.OK for st in conn.call(P.Opcode.RELEASE, meta).statuses)
        except (_Failure, ProtocolError):
            self._drop(conn)   # closing the connection releases its leases on the node
            return not confirm   # unconfirmed: the leases were held until the copies ended

    def _check_open(self) -> None:
        if self._closed:
            raise KvasirError("the store is closed")

