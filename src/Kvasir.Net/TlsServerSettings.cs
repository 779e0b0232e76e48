using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;

namespace Kvasir.Net;

/// <summary>
/// The node side of TLS on the data plane: its certificate and key (PEM), and optionally the CA
/// whose certificates clients must present. Loaded once; each connection's handshake reuses it.
/// </summary>
public sealed class TlsServerSettings
{
    /// <summary>First byte of a TLS record carrying a handshake (a ClientHello starts with it).</summary>
    public const byte HandshakeRecord = 0x16;

    private readonly SslServerAuthenticationOptions _options;

    private TlsServerSettings(SslServerAuthenticationOptions options, bool requiresClientCertificate)
    {
        _options = options;
        RequiresClientCertificate = requiresClientCertificate;
    }

    /// <summary>Clients must present a certificate signed by the client CA.</summary>
    public bool RequiresClientCertificate { get; }

    /// <summary>
    /// Loads <paramref name="certFile"/> (the node's certificate, optionally followed by its chain) and
    /// <paramref name="keyFile"/>; with <paramref name="clientCaFile"/> every client must present a
    /// certificate that chains to it. Throws <see cref="TlsConfigurationException"/> naming the file and the problem.
    /// </summary>
    public static TlsServerSettings Load(string certFile, string keyFile, string? clientCaFile)
    {
        var (leaf, chain) = TlsFiles.LoadIdentity(certFile, keyFile, "TLS");
        if (!leaf.HasPrivateKey) throw new TlsConfigurationException($"TLS key {keyFile} does not hold the private key of {certFile}");
        var options = new SslServerAuthenticationOptions
        {
            ServerCertificateContext = SslStreamCertificateContext.Create(leaf, chain, offline: true),
            EnabledSslProtocols = System.Security.Authentication.SslProtocols.Tls12 | System.Security.Authentication.SslProtocols.Tls13,
        };
        if (clientCaFile is not null)
        {
            var policy = TlsFiles.CustomTrust(TlsFiles.LoadCertificates(clientCaFile, "TLS client CA"));
            options.ClientCertificateRequired = true;
            options.CertificateChainPolicy = policy;
            options.RemoteCertificateValidationCallback = (_, _, _, errors) => errors == SslPolicyErrors.None;
        }
        return new TlsServerSettings(options, clientCaFile is not null);
    }

    /// <summary>
    /// Runs the server side of the handshake on an accepted socket. The stream does not own the socket:
    /// the caller disposes both. Throws <see cref="System.Security.Authentication.AuthenticationException"/>
    /// or <see cref="IOException"/> when the client fails the handshake (no or an untrusted client certificate).
    /// </summary>
    public async Task<SslStream> AuthenticateAsync(Socket socket, CancellationToken ct)
    {
        var stream = new SslStream(new NetworkStream(socket, ownsSocket: false), leaveInnerStreamOpen: false);
        try
        {
            await stream.AuthenticateAsServerAsync(_options, ct).ConfigureAwait(false);
            return stream;
        }
        catch
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }
}
