using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using StackExchange.Redis;

namespace Kvasir.Cluster;

/// <summary>
/// Turns a <see cref="RedisUrl"/> into StackExchange.Redis options: TLS with the URL's CA (the
/// server's certificate must chain to it and name the host), ACL user and password, and for
/// sentinels the master's service name, so the connection follows the master across failovers.
/// It remembers why the last TLS handshake was refused, for the errors callers see.
/// </summary>
internal sealed class RedisConnector(RedisUrl url)
{
    private volatile string? _tlsRefusal;
    private volatile string? _failure;

    /// <summary>Why the server's certificate was last refused; null when none was.</summary>
    public string? TlsRefusal => _tlsRefusal;

    /// <summary>The connection goes to the master that sentinels name (redis+sentinel://).</summary>
    public bool FollowsSentinels => url.SentinelMaster is not null;

    public ConfigurationOptions Options(TimeSpan timeout)
    {
        var options = new ConfigurationOptions
        {
            AbortOnConnectFail = false,
            ConnectTimeout = (int)timeout.TotalMilliseconds,
            SyncTimeout = (int)timeout.TotalMilliseconds,
            AsyncTimeout = (int)timeout.TotalMilliseconds,
            ConnectRetry = 1,
            User = url.User,
            Password = url.Password,
            DefaultDatabase = url.Database,
            ClientName = "kvasir",
            KeepAlive = 5,
            ServiceName = url.SentinelMaster,
            // While disconnected a call fails at once (the registrar turns Degraded, the watcher keeps
            // its view) instead of queueing until the timeout: the behaviour callers were built for.
            BacklogPolicy = BacklogPolicy.FailFast,
        };
        foreach (var (host, port) in url.Endpoints) options.EndPoints.Add(host, port);
        if (url.Tls)
        {
            options.Ssl = true;
            options.SslHost = url.Host;
            options.CertificateValidation += CheckCertificate;
        }
        return options;
    }

    private bool CheckCertificate(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        var refusal = Refusal(certificate, errors);
        _tlsRefusal = refusal;   // cleared by a handshake that passes, so a later failure is not blamed on it
        return refusal is null;
    }

    private string? Refusal(X509Certificate? certificate, SslPolicyErrors errors)
    {
        if (certificate is null) return $"{url.Host} sent no TLS certificate";
        if ((errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
            return $"the server's TLS certificate ({certificate.Subject}) does not name {url.Host}";
        if (url.CaCertificates is null)
            return errors == SslPolicyErrors.None ? null : $"the server's TLS certificate ({certificate.Subject}) is not trusted by this host ({errors}); name its CA with ?ca=/path/ca.pem or --redis-ca";
        using var own = new X509Chain();
        own.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        own.ChainPolicy.CustomTrustStore.AddRange(url.CaCertificates);
        own.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var leaf = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        if (own.Build(leaf)) return null;
        var why = string.Join(", ", own.ChainStatus.Select(s => s.Status.ToString()).Distinct());
        return $"the server's TLS certificate ({certificate.Subject}, issued by {certificate.Issuer}) is not signed by the CA in {url.CaFile} ({why})";
    }

    /// <summary>Opens the connection; with sentinels, asks them for the master first.</summary>
    public async Task<ConnectionMultiplexer> ConnectAsync(TimeSpan timeout)
    {
        try
        {
            // The library's connect log is the one place that says why the first connection failed.
            var log = new StringWriter();
            var redis = await ConnectionMultiplexer.ConnectAsync(Options(timeout), log).ConfigureAwait(false);
            if (!redis.IsConnected) _failure = FirstFailure(log.ToString());
            redis.ConnectionFailed += (_, e) => _failure = $"{e.FailureType}: {(e.Exception?.InnerException ?? e.Exception)?.Message}";
            redis.ConnectionRestored += (_, _) => _failure = null;
            return redis;
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException or ArgumentException)
        {
            throw new ClusterRegistryException(Describe(ex), ex);
        }
    }

    /// <summary>The server's first error reply, or the reason under the first failed connection, in the library's connect log.</summary>
    private static string? FirstFailure(string log)
    {
        foreach (var line in log.Split('\n'))
        {
            int error = line.IndexOf("SimpleError: ", StringComparison.Ordinal);
            if (error >= 0) return line[(error + "SimpleError: ".Length)..].Trim();
            int reason = line.IndexOf(": > ", StringComparison.Ordinal);
            if (reason >= 0) return line[(reason + 4)..].Trim();
        }
        return null;
    }

    /// <summary>One line for a failed call: the TLS refusal or failed login when that was the cause, else the library's message and the last connection failure.</summary>
    public string Describe(Exception ex)
    {
        var message = ex.Message.ReplaceLineEndings(" ");
        int noise = message.IndexOf(", mc: ", StringComparison.Ordinal);   // the library's thread-pool and version figures
        if (noise > 0) message = message[..noise];
        var failure = _failure;
        // Not connected: a refused handshake is the cause whether or not the library's log or events said why
        // (the refusal is cleared by any handshake that passes, so it is never stale).
        bool unconnected = message.StartsWith("No connection is active", StringComparison.Ordinal);
        if (TlsRefusal is { } tls && (unconnected || message.Contains("certificate", StringComparison.Ordinal)))
            return $"redis {url}: TLS refused: {tls}";
        // A refused login, whether the library's message or its connect log says so, is named as such.
        var why = unconnected && failure is not null ? failure : message;
        if (why.Contains("WRONGPASS", StringComparison.Ordinal) || why.Contains("NOAUTH", StringComparison.Ordinal))
            return $"redis {url}: authentication failed (check the URL's user and password): {why}";
        // Not connected with a known cause: the cause and the fix, not the library's operation dump.
        if (unconnected && failure is not null) return $"redis {url}: cannot connect ({failure}): is redis-server running there?";
        return $"redis {url}: {why}";
    }
}
