"""TLS for the data plane (nodes started with ``kvasir serve --tls-cert/--tls-key``), with the ``ssl`` module.

:class:`TlsSettings` holds one client context: the CA to trust (a PEM file, or ``"system"`` for the
system's roots), the name the node's certificate must carry (default: the host connected to), and an
optional client certificate for nodes started with ``--tls-client-ca``. :meth:`TlsSettings.wrap` runs the
handshake and turns each failure into a one-line :class:`KvasirError` that says why.
"""

import socket
import ssl
from typing import Optional

from .errors import KvasirError

# OpenSSL's reasons when the peer answered a ClientHello with something that is not TLS
# (a plaintext Kvasir node answers with an error frame starting "KVSR").
_NOT_TLS_REASONS = {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL",
                    "HTTP_REQUEST", "RECORD_TOO_LARGE"}


class TlsSettings:
    """Client TLS settings; ``ca`` is a PEM file or ``"system"``; ``cert``/``key`` go together."""

    def __init__(self, ca: str, server_name: Optional[str] = None, cert: Optional[str] = None, key: Optional[str] = None):
        if (cert is None) != (key is None):
            raise KvasirError("a TLS client certificate needs both tls_cert and tls_key")
        self.ca, self.server_name, self.cert, self.key = ca, (server_name or None), cert, key
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            if ca == "system":
                ctx.load_default_certs()
            else:
                ctx.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as ex:
            raise KvasirError(f"TLS CA file {ca}: {getattr(ex, 'strerror', None) or ex}") from None
        if cert is not None:
            try:
                ctx.load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as ex:
                raise KvasirError(f"TLS client certificate {cert} with key {key}: {getattr(ex, 'strerror', None) or ex}") from None
        self._context = ctx

    @staticmethod
    def from_config(cfg: dict) -> Optional["TlsSettings"]:
        """Settings from the ``tls_*`` configuration keys, or None when none is set."""
        names = ("tls_ca", "tls_server_name", "tls_cert", "tls_key")
        if all(not cfg.get(n) for n in names):
            return None
        if not cfg.get("tls_ca"):
            raise KvasirError("TLS needs tls_ca: the PEM file of the CA that signs the nodes' certificates, or \"system\"")
        return TlsSettings(cfg["tls_ca"], cfg.get("tls_server_name"), cfg.get("tls_cert") or None, cfg.get("tls_key") or None)

    def options(self) -> dict:
        """Keyword arguments for another :class:`kvasir.KvStore` with the same settings (a cluster's per-node stores)."""
        return {"tls_ca": self.ca, "tls_server_name": self.server_name, "tls_cert": self.cert, "tls_key": self.key}

    @property
    def has_client_certificate(self) -> bool:
        return self.cert is not None

    def wrap(self, sock: socket.socket, host: str, where: str) -> ssl.SSLSocket:
        """Runs the client handshake on a connected socket (under its timeout); raises :class:`KvasirError` with the reason."""
        name = self.server_name or host
        try:
            return self._context.wrap_socket(sock, server_hostname=name)
        except ssl.SSLCertVerificationError as ex:
            reason = ex.verify_message or str(ex)
            hint = (" (set tls_server_name to a name in the certificate)" if "mismatch" in reason.lower() or "not valid for" in reason
                    else " (set tls_ca to the CA that signs the node's certificate)")
            raise KvasirError(f"TLS to {where}: the node's certificate was rejected: {reason}{hint}") from None
        except ssl.SSLError as ex:
            if ex.reason in _NOT_TLS_REASONS:
                raise KvasirError(f"TLS to {where}: the node does not speak TLS (it answered in plaintext: {ex.reason}): "
                                  "drop the TLS options or start the node with --tls-cert/--tls-key") from None
            raise KvasirError(f"TLS to {where}: handshake failed: {ex}") from None
        except socket.timeout:
            raise KvasirError(f"TLS to {where}: the handshake timed out") from None
        except OSError as ex:
            raise KvasirError(f"TLS to {where}: the node closed the connection during the handshake: {ex.strerror or ex}") from None
