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

    private readonly SslStreamCertificateContext _certificate;
    private readonly X509ChainPolicy? _clientTrust;

    private TlsServerSettings(SslStreamCertificateContext certificate, X509ChainPolicy? clientTrust)
    {
        _certificate = certificate;
        _clientTrust = clientTrust;
    }

    /// <summary>Clients must present a certificate signed by the client CA.</summary>
    public bool RequiresClientCertificate => _clientTrust is not null;

    /// <summary>
    /// Loads <paramref name="certFile"/> (the node's certificate, optionally followed by its chain) and
    /// <paramref name="keyFile"/>; with <paramref name="clientCaFile"/> every client must present a
    /// certificate that chains to it. Throws <see cref="TlsConfigurationException"/> naming the file and the problem.
    /// </summary>
    public static TlsServerSettings Load(string certFile, string keyFile, string? clientCaFile)
    {
        var (leaf, chain) = TlsFiles.LoadIdentity(certFile, keyFile, "TLS");
        if (!leaf.HasPrivateKey) throw new TlsConfigurationException($"TLS key {keyFile} does not hold the private key of {certFile}");
        var trust = clientCaFile is null ? null : TlsFiles.CustomTrust(TlsFiles.LoadCertificates(clientCaFile, "TLS client CA"));
        return new TlsServerSettings(SslStreamCertificateContext.Create(leaf, chain, offline: true), trust);
    }

    /// <summary>
    /// Runs the server side of the handshake on an accepted socket. The stream does not own the socket:
    /// the caller disposes both. Throws <see cref="System.Security.Authentication.AuthenticationException"/>
    /// (saying why a client certificate was refused) or <see cref="IOException"/> when the client fails the handshake.
    /// </summary>
    public async Task<SslStream> AuthenticateAsync(Socket socket, CancellationToken ct)
    {
        string? rejection = null;
        var options = new SslServerAuthenticationOptions
        {
            ServerCertificateContext = _certificate,
            EnabledSslProtocols = System.Security.Authentication.SslProtocols.Tls12 | System.Security.Authentication.SslProtocols.Tls13,
        };
        if (_clientTrust is not null)
        {
            options.ClientCertificateRequired = true;
            options.CertificateChainPolicy = _clientTrust;
            options.RemoteCertificateValidationCallback = (_, certificate, chain, errors) =>
            {
                if (errors == SslPolicyErrors.None) return true;
                rejection = certificate is null || errors.HasFlag(SslPolicyErrors.RemoteCertificateNotAvailable)
                    ? "the client presented no certificate (--tls-client-ca requires one)"
                    : $"the client's certificate is not signed by the client CA ({TlsFiles.ChainProblems(chain)})";
                return false;
            };
        }
        var stream = new SslStream(new NetworkStream(socket, ownsSocket: false), leaveInnerStreamOpen: false);
        try
        {
            await stream.AuthenticateAsServerAsync(options, ct).ConfigureAwait(false);
            return stream;
        }
        catch (System.Security.Authentication.AuthenticationException ex) when (rejection is not null)
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw new System.Security.Authentication.AuthenticationException(rejection, ex);
        }
        catch
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }
}
