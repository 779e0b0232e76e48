using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Kvasir.Cluster;

/// <summary>
/// Where the registry lives, parsed from one of (docs/cluster.md):
/// <c>redis://[[user]:password@]host[:port][/db]</c>,
/// <c>rediss://[[user]:password@]host[:port][/db][?ca=/path/ca.pem]</c> (TLS), or
/// <c>redis+sentinel://[[user]:password@]host1[:port1],host2[:port2]/master[/db]</c> (the master
/// that the sentinels name, followed across failovers). Ports default to 6379, sentinels' to 26379.
/// </summary>
public sealed record RedisUrl
{
    public const int DefaultPort = 6379;
    public const int DefaultSentinelPort = 26379;

    /// <summary>The server, or for <see cref="SentinelMaster"/> the sentinels.</summary>
    public required IReadOnlyList<(string Host, int Port)> Endpoints { get; init; }

    /// <summary>rediss://: TLS, the server's certificate checked against <see cref="CaFile"/> or the system's roots.</summary>
    public bool Tls { get; init; }

    /// <summary>A PEM file of the CA(s) that sign the server's certificate, instead of the system's roots.</summary>
    public string? CaFile { get; init; }

    /// <summary>The CA certificates read from <see cref="CaFile"/> at parse time.</summary>
    public X509Certificate2Collection? CaCertificates { get; init; }

    /// <summary>ACL user name; null for the default user.</summary>
    public string? User { get; init; }

    public string? Password { get; init; }

    public int Database { get; init; }

    /// <summary>redis+sentinel://: the master's name in the sentinels.</summary>
    public string? SentinelMaster { get; init; }

    public string Host => Endpoints[0].Host;

    public int Port => Endpoints[0].Port;

    /// <summary>
    /// Parses <paramref name="url"/>; <paramref name="caFile"/> (an option beside the URL, such as
    /// <c>--redis-ca</c>) names the CA file when the URL's <c>?ca=</c> does not. The CA file is read
    /// here, so a missing or unreadable one is refused before anything connects.
    /// </summary>
    public static RedisUrl Parse(string url, string? caFile = null)
    {
        ArgumentNullException.ThrowIfNull(url);
        int schemeEnd = url.IndexOf("://", StringComparison.Ordinal);
        var scheme = schemeEnd < 0 ? "" : url[..schemeEnd];
        if (scheme is not ("redis" or "rediss" or "redis+sentinel"))
            throw new FormatException(scheme is "rediss+sentinel"
                ? $"'{Redact(url)}': TLS to sentinels is not supported; use redis+sentinel:// or rediss://"
                : $"'{Redact(url)}' is not a redis://, rediss:// or redis+sentinel:// URL");
        var rest = url[(schemeEnd + 3)..];
        string? query = null;
        int q = rest.IndexOf('?');
        if (q >= 0) { query = rest[(q + 1)..]; rest = rest[..q]; }
        int at = rest.LastIndexOf('@');
        string? user = null, password = null;
        if (at >= 0)
        {
            var info = rest[..at];
            rest = rest[(at + 1)..];
            int colon = info.IndexOf(':');
            if (colon < 0) password = Uri.UnescapeDataString(info);
            else
            {
                user = colon > 0 ? Uri.UnescapeDataString(info[..colon]) : null;
                password = Uri.UnescapeDataString(info[(colon + 1)..]);
            }
            if (password.Length == 0) password = null;
        }
        int slash = rest.IndexOf('/');
        var hosts = slash < 0 ? rest : rest[..slash];
        var path = slash < 0 ? "" : rest[(slash + 1)..].TrimEnd('/');
        bool sentinel = scheme == "redis+sentinel";
        var endpoints = ParseHosts(url, hosts, sentinel ? DefaultSentinelPort : DefaultPort);
        if (!sentinel && endpoints.Count > 1)
            throw new FormatException($"'{Redact(url)}': several hosts need redis+sentinel://SENTINEL1,SENTINEL2/MASTER");
        string? master = null;
        if (sentinel)
        {
            int s = path.IndexOf('/');
            master = s < 0 ? path : path[..s];
            path = s < 0 ? "" : path[(s + 1)..];
            if (master.Length == 0) throw new FormatException($"'{Redact(url)}': name the master: redis+sentinel://HOST:PORT[,HOST:PORT]/MASTER[/DB]");
        }
        int db = 0;
        if (path.Length > 0 && (!int.TryParse(path, System.Globalization.NumberStyles.None, null, out db) || db > 10000))
            throw new FormatException($"'{Redact(url)}': '{path}' is not a database number");
        var ca = ParseQuery(url, query);
        if (ca is not null && caFile is not null && ca != caFile)
            throw new FormatException($"'{Redact(url)}': the CA file is given twice (?ca={ca} and {caFile}); give it once");
        ca ??= caFile;
        if (ca is not null && scheme != "rediss")
            throw new FormatException($"'{Redact(url)}': a CA file applies to TLS only; use rediss://");
        return new RedisUrl
        {
            Endpoints = endpoints,
            Tls = scheme == "rediss",
            CaFile = ca,
            CaCertificates = ca is null ? null : LoadCa(ca),
            User = user,
            Password = password,
            Database = db,
            SentinelMaster = master,
        };
    }

    private static List<(string Host, int Port)> ParseHosts(string url, string hosts, int defaultPort)
    {
        var list = new List<(string Host, int Port)>();
        foreach (var one in hosts.Split(','))
        {
            var text = one.Trim();
            bool bracketed = text.StartsWith('[');
            int close = bracketed ? text.IndexOf(']') : -1;
            bool hasPort = bracketed ? close >= 0 && close + 1 < text.Length && text[close + 1] == ':' : text.Contains(':');
            if (!hasPort) text = bracketed ? $"{text}:{defaultPort}" : Endpoint.Format(text, defaultPort);
            if (!Endpoint.TryParse(text, out var endpoint))
                throw new FormatException(one.Length == 0 ? $"'{Redact(url)}' has no host" : $"'{Redact(url)}': '{one}' is not HOST[:PORT]");
            list.Add(endpoint);
        }
        return list;
    }

    /// <summary>The one query parameter: <c>ca=PATH</c>.</summary>
    private static string? ParseQuery(string url, string? query)
    {
        string? ca = null;
        foreach (var pair in (query ?? "").Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            int eq = pair.IndexOf('=');
            var name = eq < 0 ? pair : pair[..eq];
            if (name != "ca" || eq < 0 || eq == pair.Length - 1)
                throw new FormatException($"'{Redact(url)}': unknown parameter '{pair}' (the one accepted is ca=/path/to/ca.pem)");
            ca = Uri.UnescapeDataString(pair[(eq + 1)..]);
        }
        return ca;
    }

    private static X509Certificate2Collection LoadCa(string path)
    {
        var certs = new X509Certificate2Collection();
        try { certs.ImportFromPemFile(path); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or CryptographicException)
        {
            throw new FormatException($"CA file '{path}' cannot be read: {ex.Message}", ex);
        }
        if (certs.Count == 0) throw new FormatException($"CA file '{path}' holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
        return certs;
    }

    /// <summary>The URL with its password replaced by ***, for messages and logs.</summary>
    public static string Redact(string url)
    {
        int start = url.IndexOf("://", StringComparison.Ordinal);
        int at = url.LastIndexOf('@');
        if (start < 0 || at < start) return url;
        var info = url[(start + 3)..at];
        int colon = info.IndexOf(':');
        return colon < 0 ? $"{url[..(start + 3)]}***@{url[(at + 1)..]}" : $"{url[..(start + 3)]}{info[..colon]}:***@{url[(at + 1)..]}";
    }

    /// <summary>The URL without its password (it may name the user).</summary>
    public override string ToString()
    {
        var scheme = SentinelMaster is not null ? "redis+sentinel" : Tls ? "rediss" : "redis";
        var user = User is not null ? $"{Uri.EscapeDataString(User)}@" : "";
        var hosts = string.Join(",", Endpoints.Select(e => Endpoint.Format(e.Host, e.Port)));
        var master = SentinelMaster is not null ? $"/{SentinelMaster}" : "";
        var db = Database != 0 ? $"/{Database}" : "";
        return $"{scheme}://{user}{hosts}{master}{db}";
    }
}
