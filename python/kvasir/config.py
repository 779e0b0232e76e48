"""Client configuration: KVASIR_CONFIG (YAML), then KVASIR_* environment, then arguments (later wins)."""

import os
from typing import List

from .errors import KvasirError

DEFAULT_PORT = 7380
DEFAULT_SERVER = f"127.0.0.1:{DEFAULT_PORT}"
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_REQUEST_TIMEOUT = 30.0

# --- configuration ---------------------------------------------------------------------------------

def _load_yaml_config(path: str) -> dict:
    try:
        import yaml  # noqa: PLC0415 - optional dependency, only for KVASIR_CONFIG
    except ImportError:
        raise KvasirError(f"KVASIR_CONFIG={path} needs PyYAML to read it "
                          "(pip install pyyaml, or apt-get install python3-yaml)") from None
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as ex:
        raise KvasirError(f"cannot read KVASIR_CONFIG={path}: {ex}") from None
    except yaml.YAMLError as ex:
        raise KvasirError(f"KVASIR_CONFIG={path} is not valid YAML: {ex}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise KvasirError(f"KVASIR_CONFIG={path} must hold a mapping")
    known = {"servers", "auth_key", "auth_key_file", "transport", "connect_timeout", "request_timeout", "redis_url", "cluster", "replicas",
             "tls_ca", "tls_server_name", "tls_cert", "tls_key", "connections_per_node", "stripe_bytes"}
    # "node:" holds the settings of `kvasir serve` (docs/operations.md): the node's, not the client's.
    unknown = set(data) - known - {"node"}
    if unknown:
        raise KvasirError(f"KVASIR_CONFIG={path}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
    return data


def resolve_config(servers=None, auth_key=None, transport=None, connect_timeout=None, request_timeout=None,
                   redis_url=None, cluster=None, replicas=None, tls=None, connections_per_node=None, stripe_bytes=None) -> dict:
    """The effective configuration: ``KVASIR_CONFIG`` (YAML file), then the environment
    (``KVASIR_SERVERS``, ``KVASIR_AUTH_KEY`` - else ``KVASIR_AUTH_KEY_FILE`` or the file's ``auth_key_file``, a
    private file holding the key -, ``KVASIR_TRANSPORT``, ``KVASIR_CONNECT_TIMEOUT``,
    ``KVASIR_REQUEST_TIMEOUT``, ``KVASIR_REDIS_URL``, ``KVASIR_CLUSTER``, ``KVASIR_REPLICAS``,
    ``KVASIR_TLS_CA``, ``KVASIR_TLS_SERVER_NAME``, ``KVASIR_TLS_CLIENT_CERT``, ``KVASIR_TLS_CLIENT_KEY``: not
    ``KVASIR_TLS_CERT``/``KVASIR_TLS_KEY``, which are the node's own certificate, ``KVASIR_CONNECTIONS_PER_NODE``,
    ``KVASIR_STRIPE_BYTES``: bytes, or a size such as ``1MiB``), then the explicit arguments that are not ``None``
    (``tls``: a dict of the ``tls_*`` ones); later wins. ``connections_per_node`` and ``stripe_bytes`` stay ``None``
    when nothing sets them (the store's defaults apply)."""
    cfg = {"servers": DEFAULT_SERVER, "auth_key": None, "transport": "auto",
           "connect_timeout": DEFAULT_CONNECT_TIMEOUT, "request_timeout": DEFAULT_REQUEST_TIMEOUT,
           "redis_url": None, "cluster": "default", "replicas": None,   # None: the cluster's setting, else 1
           "tls_ca": None, "tls_server_name": None, "tls_cert": None, "tls_key": None,
           "connections_per_node": None, "stripe_bytes": None}
    path = os.environ.get("KVASIR_CONFIG")
    if path:
        cfg.update({k: v for k, v in _load_yaml_config(path).items() if v is not None})
    for name, var in (("servers", "KVASIR_SERVERS"), ("auth_key", "KVASIR_AUTH_KEY"), ("transport", "KVASIR_TRANSPORT"),
                      ("connect_timeout", "KVASIR_CONNECT_TIMEOUT"), ("request_timeout", "KVASIR_REQUEST_TIMEOUT"),
                      ("redis_url", "KVASIR_REDIS_URL"), ("cluster", "KVASIR_CLUSTER"), ("replicas", "KVASIR_REPLICAS"),
                      ("tls_ca", "KVASIR_TLS_CA"), ("tls_server_name", "KVASIR_TLS_SERVER_NAME"),
                      ("tls_cert", "KVASIR_TLS_CLIENT_CERT"), ("tls_key", "KVASIR_TLS_CLIENT_KEY"),
                      ("connections_per_node", "KVASIR_CONNECTIONS_PER_NODE"), ("stripe_bytes", "KVASIR_STRIPE_BYTES")):
        value = os.environ.get(var)
        if value:
            cfg[name] = value
    if cfg["auth_key"] is None:   # no key given, in the file or the environment: a key file, if one is named
        key_file, source = os.environ.get("KVASIR_AUTH_KEY_FILE"), "KVASIR_AUTH_KEY_FILE"
        if not key_file and cfg.get("auth_key_file"):
            key_file, source = cfg["auth_key_file"], "auth_key_file"
        if key_file and auth_key is None:
            from .auth import read_key_file  # noqa: PLC0415
            cfg["auth_key"] = read_key_file(key_file, source)
    cfg.pop("auth_key_file", None)
    # Text from the file or the environment; an argument must already be a number (the store checks it).
    if isinstance(cfg["connections_per_node"], str):
        try:
            cfg["connections_per_node"] = int(cfg["connections_per_node"].strip())
        except ValueError:
            raise KvasirError(f"connections_per_node must be an integer of at least 1, not {cfg['connections_per_node']!r}") from None
    if isinstance(cfg["stripe_bytes"], str):
        cfg["stripe_bytes"] = parse_size(cfg["stripe_bytes"], "stripe_bytes")
    explicit = {"servers": servers, "auth_key": auth_key, "transport": transport,
                "connect_timeout": connect_timeout, "request_timeout": request_timeout,
                "redis_url": redis_url, "cluster": cluster, "replicas": replicas, **(tls or {}),
                "connections_per_node": connections_per_node, "stripe_bytes": stripe_bytes}
    cfg.update({k: v for k, v in explicit.items() if v is not None})
    for name in ("connect_timeout", "request_timeout"):
        try:
            cfg[name] = float(cfg[name])
        except (TypeError, ValueError):
            raise KvasirError(f"{name} must be a number of seconds, not {cfg[name]!r}") from None
        if cfg[name] <= 0:
            raise KvasirError(f"{name} must be positive")
    if cfg["replicas"] is not None:
        try:
            cfg["replicas"] = int(cfg["replicas"])
        except (TypeError, ValueError):
            raise KvasirError(f"replicas must be an integer, not {cfg['replicas']!r}") from None
        if not 1 <= cfg["replicas"] <= 16:
            raise KvasirError(f"replicas must be 1 to 16 (got {cfg['replicas']})")
    if isinstance(cfg["servers"], str) and cfg["servers"].strip().startswith(("redis://", "rediss://", "redis+sentinel://")) \
            and cfg["redis_url"] is None:
        cfg["redis_url"] = cfg["servers"].strip()
    return cfg


_SIZE_UNITS = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str, name: str) -> int:
    """``"1048576"``, ``"1MiB"``, ``"512KiB"`` (binary units, as the CLI's sizes) as bytes; a clear error otherwise."""
    t = text.strip().lower()
    digits = len(t) - len(t.lstrip("0123456789"))
    unit = t[digits:].strip()
    if digits == 0 or unit not in _SIZE_UNITS:
        raise KvasirError(f"{name} must be a size in bytes such as 1048576 or 1MiB, not {text!r}")
    return int(t[:digits]) * _SIZE_UNITS[unit]


def parse_servers(servers) -> List[tuple]:
    """``"host:port"`` entries (a list or a comma-separated string; ``[v6addr]:port`` accepted)."""
    items = servers.split(",") if isinstance(servers, str) else list(servers)
    out = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        if text.startswith("["):
            host, sep, port = text[1:].partition("]:")
        else:
            host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise KvasirError(f"server {text!r} is not HOST:PORT")
        try:
            port_no = int(port)
        except ValueError:
            raise KvasirError(f"server {text!r}: port {port!r} is not a number") from None
        if not 0 < port_no < 65536:
            raise KvasirError(f"server {text!r}: port out of range")
        out.append((host, port_no))
    if not out:
        raise KvasirError("no server configured")
    return out
