using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace Kvasir.Net;

/// <summary>
/// The client side of TLS on the data plane: which CA to trust (a PEM file, or the system's roots),
/// the name to check the node's certificate against (default: the host connected to), and an
/// optional client certificate for nodes that require one.
/// </summary>
public sealed class TlsClientSettings
{
    private readonly X509ChainPolicy? _trust;
    private readonly X509Certificate2Collection? _clientCertificates;
    private readonly string? _serverName;

    private TlsClientSettings(X509ChainPolicy? trust, X509Certificate2Collection? clientCertificates, string? serverName)
    {
        _trust = trust;
        _clientCertificates = clientCertificates;
        _serverName = serverName;
    }

    /// <summary>
    /// <paramref name="caFile"/>: PEM of the CA(s) that sign nodes' certificates, or null for the system's roots.
    /// <paramref name="serverName"/>: the name the node's certificate must carry, or null for the host connected to.
    /// <paramref name="certFile"/>/<paramref name="keyFile"/>: this client's certificate and key, both or neither.
    /// Throws <see cref="TlsConfigurationException"/> naming the file or option at fault.
    /// </summary>
    public static TlsClientSettings Load(string? caFile, string? serverName, string? certFile, string? keyFile)
    {
        if ((certFile is null) != (keyFile is null))
            throw new TlsConfigurationException("a TLS client certificate needs both a certificate file and a key file");
        var trust = caFile is null ? null : TlsFiles.CustomTrust(TlsFiles.LoadCertificates(caFile, "TLS CA"));
        X509Certificate2Collection? identity = null;
        if (certFile is not null)
        {
            var (leaf, chain) = TlsFiles.LoadIdentity(certFile, keyFile!, "TLS client");
            identity = [leaf, .. chain];
        }
        return new TlsClientSettings(trust, identity, string.IsNullOrWhiteSpace(serverName) ? null : serverName.Trim());
    }

    /// <summary>The name checked against the node's certificate when connecting to <paramref name="host"/>.</summary>
    public string ServerName(string host) => _serverName ?? host;

    /// <summary>A client certificate is configured.</summary>
    public bool HasClientCertificate => _clientCertificates is not null;

    /// <summary>
    /// Runs the client side of the handshake on a connected socket. The stream does not own the socket.
    /// Throws <see cref="AuthenticationException"/> with a one-line reason: the node's certificate is not
    /// trusted or not for this name (with the chain's complaint), or the node does not speak TLS at all.
    /// </summary>
    public async Task<SslStream> AuthenticateAsync(Socket socket, string host, CancellationToken ct)
    {
        var sniffer = new FirstByteStream(new NetworkStream(socket, ownsSocket: false));
        string? rejection = null;
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = ServerName(host),
            EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            CertificateChainPolicy = _trust,
            ClientCertificates = _clientCertificates,
            RemoteCertificateValidationCallback = (_, _, chain, errors) =>
            {
                if (errors == SslPolicyErrors.None) return true;
                rejection = Describe(errors, chain, ServerName(host));
                return false;
            },
        };
        var stream = new SslStream(sniffer, leaveInnerStreamOpen: false);
        try
        {
            await stream.AuthenticateAsClientAsync(options, ct).ConfigureAwait(false);
            return stream;
        }
        catch (Exception ex) when (ex is AuthenticationException or IOException)
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            if (rejection is not null) throw new AuthenticationException($"the node's certificate was rejected: {rejection}", ex);
            // A TLS record starts with a content type of 20..23; anything else is a peer that does not speak TLS
            // (a plaintext Kvasir node answers a ClientHello with an error frame starting "KVSR").
            if (sniffer.First is { } b && b is < 20 or > 23)
                throw new AuthenticationException("the node does not speak TLS (it answered in plaintext): drop the TLS options or start the node with --tls-cert/--tls-key", ex);
            throw new AuthenticationException($"TLS handshake failed: {ex.Message}", ex);
        }
        catch
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private string Describe(SslPolicyErrors errors, X509Chain? chain, string name)
    {
        var parts = new List<string>();
        if (errors.HasFlag(SslPolicyErrors.RemoteCertificateNotAvailable)) parts.Add("the node sent no certificate");
        if (errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch))
            parts.Add($"it is not issued for '{name}' (set the TLS server name to a name in the certificate)");
        if (errors.HasFlag(SslPolicyErrors.RemoteCertificateChainErrors))
        {
            parts.Add($"its chain is not trusted ({TlsFiles.ChainProblems(chain)}){(_trust is null ? " by the system's roots (set a TLS CA file)" : " by the TLS CA file")}");
        }
        return string.Join(", ", parts);
    }
}
