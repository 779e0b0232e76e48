using Kvasir.Net;

namespace Kvasir.Client;

/// <summary>TLS settings of a client (<see cref="KvStoreOptions.Tls"/>): whom to trust, which name to check, and an optional client certificate.</summary>
public sealed record KvTlsOptions
{
    /// <summary>PEM file of the CA(s) that sign the nodes' certificates. Default none: the system's trusted roots.</summary>
    public string? CaFile { get; init; }

    /// <summary>
    /// Name the node's certificate must carry. Default none: the host connected to (for a cluster, each node's
    /// advertised host). Set it when nodes are reached by IP address but their certificate names a DNS name.
    /// </summary>
    public string? ServerName { get; init; }

    /// <summary>PEM certificate this client presents, for nodes started with <c>--tls-client-ca</c>. Default none. Needs <see cref="KeyFile"/>.</summary>
    public string? CertFile { get; init; }

    /// <summary>PEM private key of <see cref="CertFile"/>. Default none.</summary>
    public string? KeyFile { get; init; }

    /// <summary>Loads the files; throws <see cref="KvasirException"/> naming the file and what is wrong with it.</summary>
    internal TlsClientSettings Load()
    {
        try { return TlsClientSettings.Load(CaFile, ServerName, CertFile, KeyFile); }
        catch (TlsConfigurationException ex) { throw new KvasirException($"TLS options: {ex.Message}", ex); }
    }
}
