using StackExchange.Redis;

namespace Kvasir.Cluster;

/// <summary>A <c>redis://[[user]:password@]host[:port][/db]</c> URL, the one form Kvasir accepts.</summary>
public sealed record RedisUrl(string Host, int Port, string? Password, int Database)
{
    public static RedisUrl Parse(string url)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme != "redis")
            throw new FormatException(url.StartsWith("rediss://", StringComparison.Ordinal)
                ? $"'{url}': TLS (rediss://) is not supported; use redis://HOST:PORT"
                : $"'{url}' is not a redis://HOST:PORT URL");
        if (string.IsNullOrEmpty(uri.Host)) throw new FormatException($"'{url}' has no host");
        string? password = null;
        if (uri.UserInfo.Length > 0)
        {
            var info = Uri.UnescapeDataString(uri.UserInfo);
            int colon = info.IndexOf(':');
            password = colon >= 0 ? info[(colon + 1)..] : info;
            if (colon > 0) throw new FormatException($"'{url}': Redis ACL user names are not supported by the client library; give only a password (redis://:PASSWORD@HOST:PORT)");
        }
        int db = 0;
        var path = uri.AbsolutePath.Trim('/');
        if (path.Length > 0 && (!int.TryParse(path, out db) || db < 0)) throw new FormatException($"'{url}': '{path}' is not a database number");
        return new RedisUrl(uri.Host.Trim('[', ']'), uri.IsDefaultPort || uri.Port < 0 ? 6379 : uri.Port, password, db);
    }

    internal ConfigurationOptions ToOptions(TimeSpan timeout)
    {
        var options = new ConfigurationOptions
        {
            AbortOnConnectFail = false,
            ConnectTimeout = (int)timeout.TotalMilliseconds,
            SyncTimeout = (int)timeout.TotalMilliseconds,
            ConnectRetry = 1,
            Password = Password,
            DefaultDatabase = Database,
            ClientName = "kvasir",
            KeepAlive = 5,
        };
        options.EndPoints.Add(Host, Port);
        return options;
    }

    public override string ToString() => $"redis://{Endpoint.Format(Host, Port)}{(Database != 0 ? $"/{Database}" : "")}";
}
