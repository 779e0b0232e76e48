using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using Kvasir.Protocol;
using Microsoft.Extensions.Logging;

namespace Kvasir.Client.Internal;

/// <summary>
/// Picks a single node's transport (<see cref="KvStoreOptions.Transport"/>): connects over TCP, then,
/// unless TCP was asked for, tries to map the node's shared-memory arena. Auto falls back to TCP and
/// logs why; Shm throws <see cref="KvasirException"/> with the same reason.
/// </summary>
internal static class ShmNegotiation
{
    private const string NotLocal = " is not an address of this host";

    public static async Task<IKvTransport> ConnectAsync(KvStoreOptions options, CancellationToken ct)
    {
        var tcp = await TcpTransport.ConnectAsync(options, ct).ConfigureAwait(false);
        if (options.Transport == KvTransportKind.Tcp) return tcp;
        try
        {
            var (mapping, reason) = await TryMapAsync(tcp, tcp.Host, ct).ConfigureAwait(false);
            bool remote = reason is not null && reason.EndsWith(NotLocal, StringComparison.Ordinal);
            if (mapping is not null) return new ShmTransport(tcp, mapping);
            if (options.Transport == KvTransportKind.Shm) throw new KvasirException($"shm transport unavailable for {tcp.Address}: {reason}");
            tcp.FallbackReason = reason;
            // A remote node on TCP is the normal case; a node on this host whose arena cannot be used costs several
            // times the throughput (docs/benchmarks.md), so it is a warning. Once per store: this runs at connect.
            var logger = options.LoggerFactory?.CreateLogger("Kvasir.Client");
            if (remote) logger?.LogInformation("kvasir: using TCP to {Address}: {Reason}", tcp.Address, reason);
            else logger?.LogWarning("kvasir: using TCP to {Address}, a node on this host: {Reason}", tcp.Address, reason);
            return tcp;
        }
        catch
        {
            await tcp.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The node's arena mapped, or null and the reason it cannot be (the node is not local, has no arena, or its files cannot be opened).</summary>
    internal static async Task<(ShmMapping? Mapping, string? Reason)> TryMapAsync(TcpTransport tcp, string host, CancellationToken ct)
    {
        if (!await IsLocalAddressAsync(host, ct).ConfigureAwait(false)) return (null, host + NotLocal);
        ShmInfoReply info;
        try { info = ShmInfoReply.Read(await tcp.CallAsync(Opcode.ShmInfo, [], ct).ConfigureAwait(false)); }
        catch (KvasirException ex) { return (null, ex.Message); }
        catch (ProtocolException ex) { return (null, $"malformed SHM_INFO reply: {ex.Message}"); }
        if (info.Path.Length == 0) return (null, "the node has no shared-memory arena (started with --shm off)");
        try { return (ShmMapping.Open(info), null); }
        catch (KvasirException ex) { return (null, ex.Message); }
    }

    /// <summary>True for loopback and for the addresses of this host's network interfaces; false when <paramref name="host"/> does not resolve.</summary>
    public static async Task<bool> IsLocalAddressAsync(string host, CancellationToken ct)
    {
        IPAddress[] addresses;
        if (IPAddress.TryParse(host, out var literal)) addresses = [literal];
        else
        {
            try { addresses = await Dns.GetHostAddressesAsync(host, ct).ConfigureAwait(false); }
            catch (SocketException) { return false; }
        }
        addresses = [.. addresses.Select(Plain)];
        if (addresses.Length == 0) return false;
        if (addresses.Any(IPAddress.IsLoopback)) return true;
        HashSet<IPAddress> own;
        try
        {
            own = NetworkInterface.GetAllNetworkInterfaces()
                .SelectMany(n => n.GetIPProperties().UnicastAddresses)
                .Select(u => Plain(u.Address)).ToHashSet();
        }
        catch (NetworkInformationException) { return false; }
        return addresses.Any(own.Contains);
    }

    /// <summary>IPv4 for an IPv4-mapped IPv6 address, and no scope, so that equal hosts compare equal.</summary>
    private static IPAddress Plain(IPAddress a)
    {
        if (a.IsIPv4MappedToIPv6) return a.MapToIPv4();
        if (a.AddressFamily == AddressFamily.InterNetworkV6 && a.ScopeId != 0) return new IPAddress(a.GetAddressBytes());
        return a;
    }
}
