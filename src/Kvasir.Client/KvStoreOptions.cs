namespace Kvasir.Client;

/// <summary>Options of a <see cref="KvStore"/> talking to a node over TCP.</summary>
public sealed class KvStoreOptions
{
    /// <summary>The node, as "host:port". Default 127.0.0.1:7380 (what <c>kvasir serve</c> listens on).</summary>
    public string Server { get; init; } = "127.0.0.1:7380";

    /// <summary>The node's auth key as 64 hex characters. Default none. With a key set the client also refuses a node that does not authenticate itself.</summary>
    public string? AuthKey { get; init; }

    /// <summary>Time to open a connection and finish HELLO/AUTH. Default 5 s.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Time a request may wait for its reply, counted from when it is handed to a connection.
    /// Default 30 s. When it passes, the keys report <see cref="KvStatus.Timeout"/>; if the reply was
    /// already arriving into the caller's buffers the connection is cut first, so no byte lands in a
    /// buffer after the call has returned.
    /// </summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>TCP connections kept to the node. Default 2. Requests are pipelined on each; more connections spread large transfers over more cores.</summary>
    public int ConnectionsPerNode { get; init; } = 2;

    /// <summary>Name sent in HELLO, shown in the node's logs. Default "kvasir-dotnet".</summary>
    public string ClientName { get; init; } = "kvasir-dotnet";

    internal (string Host, int Port) ParseServer()
    {
        var s = Server.Trim();
        int colon = s.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(s[(colon + 1)..], out int port) || port is < 1 or > 65535)
            throw new KvasirException($"server address '{Server}' is not HOST:PORT");
        var host = s[..colon].Trim('[', ']');
        return (host, port);
    }

    internal void Validate()
    {
        if (ConnectionsPerNode < 1) throw new KvasirException("ConnectionsPerNode must be at least 1");
        if (ConnectTimeout <= TimeSpan.Zero || RequestTimeout <= TimeSpan.Zero) throw new KvasirException("timeouts must be positive");
        ParseServer();
    }
}
