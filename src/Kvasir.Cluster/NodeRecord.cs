using System.Text.Json;
using System.Text.Json.Serialization;

namespace Kvasir.Cluster;

/// <summary>
/// What a node publishes about itself in Redis. Stored as JSON (snake_case) so that every client
/// language reads it the same way; unknown fields are ignored, so later versions may add some.
/// </summary>
public sealed record NodeRecord
{
    /// <summary>The node id: the placement identity (hashed by rendezvous placement). Default: the data address.</summary>
    [JsonPropertyName("id")] public required string Id { get; init; }

    /// <summary>Data address clients connect to, "host:port".</summary>
    [JsonPropertyName("addr")] public required string Address { get; init; }

    /// <summary>Admin HTTP address, "host:port", when the node has one.</summary>
    [JsonPropertyName("admin")] public string? AdminAddress { get; init; }

    /// <summary>Arena capacity in bytes.</summary>
    [JsonPropertyName("capacity")] public long Capacity { get; init; }

    [JsonPropertyName("version")] public string Version { get; init; } = "";

    /// <summary>
    /// When the node started, Unix milliseconds (the node's clock): shown to operators, and with <see cref="Address"/> it
    /// tells the registry one run of a node from another (compared for equality only, never across hosts' clocks).
    /// </summary>
    [JsonPropertyName("started_ms")] public long StartedMs { get; init; }

    /// <summary>"node" for a `kvasir serve` process, "embedded" for a node inside a client process.</summary>
    [JsonPropertyName("kind")] public string Kind { get; init; } = "node";

    /// <summary>
    /// The data port speaks TLS. Clients without TLS settings refuse such a node with an error naming the option,
    /// instead of sending a plaintext HELLO; older records without the field read as false.
    /// </summary>
    [JsonPropertyName("tls")] public bool Tls { get; init; }

    public string ToJson() => JsonSerializer.Serialize(this, NodeRecordJson.Default.NodeRecord);

    /// <summary>Null when the text is not a record (a foreign or damaged entry is skipped, never fatal).</summary>
    public static NodeRecord? TryParse(string? json)
    {
        if (string.IsNullOrEmpty(json)) return null;
        try
        {
            var r = JsonSerializer.Deserialize(json, NodeRecordJson.Default.NodeRecord);
            return r is not null && IsValidId(r.Id) && Endpoint.TryParse(r.Address, out _) ? r : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Node ids are 1..255 printable ASCII characters, so that every language compares them byte-wise alike.</summary>
    public static bool IsValidId(string? id) => id is { Length: > 0 and <= 255 } && id.All(c => c is >= '!' and <= '~');
}

/// <summary>"host:port" parsing shared by records, flags and clients (IPv6 hosts in brackets).</summary>
public static class Endpoint
{
    /// <summary>Parses "host:port"; port 0 ("any free port") only with <paramref name="allowPortZero"/>.</summary>
    public static bool TryParse(string? text, out (string Host, int Port) endpoint, bool allowPortZero = false)
    {
        endpoint = default;
        if (string.IsNullOrWhiteSpace(text)) return false;
        var s = text.Trim();
        int colon = s.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(s[(colon + 1)..], System.Globalization.NumberStyles.None, null, out int port) || port > 65535 || (port == 0 && !allowPortZero)) return false;
        var host = s[..colon];
        if (host.StartsWith('[') && host.EndsWith(']')) host = host[1..^1];
        else if (host.Contains(':')) return false;
        if (host.Length == 0) return false;
        endpoint = (host, port);
        return true;
    }

    public static string Format(string host, int port) => host.Contains(':') ? $"[{host}]:{port}" : $"{host}:{port}";
}

/// <summary>
/// NodeRecord's JSON, generated at compile time (absent fields are not written): no reflection, so the native AOT
/// build registers and reads nodes too (docs/deploy.md).
/// </summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(NodeRecord))]
internal sealed partial class NodeRecordJson : JsonSerializerContext;
