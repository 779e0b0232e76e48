using Kvasir.Cli.Tests;
using Kvasir.Client;

namespace Kvasir.Cluster.Tests;

/// <summary>The registry over TLS (rediss:// with a CA file) and as an ACL user: nodes register, clients discover, bad credentials are refused by name.</summary>
public sealed class SecureRegistryTests
{
    private static readonly TimeSpan Discovery = TimeSpan.FromSeconds(20);

    internal static string NewCluster() => "t" + Guid.NewGuid().ToString("N")[..12];

    internal static Task<ServeProcess> StartNodeAsync(string url, string cluster, params string[] more)
        => ServeProcess.StartAsync(["--port", "0", "--memory", "64MiB", "--redis", url, "--cluster", cluster, "--heartbeat-ttl", "1", "--log-level", "warning", .. more]);

    internal static KvStoreOptions ClientOptions(string url, string cluster, string? ca = null, KvTlsOptions? tls = null, Microsoft.Extensions.Logging.ILoggerFactory? log = null,
        TimeSpan? connectTimeout = null) => new()
        {
            RedisUrl = url,
            RedisCaFile = ca,
            Tls = tls,
            LoggerFactory = log,
            Cluster = cluster,
            MembershipPoll = TimeSpan.FromMilliseconds(100),
            ConnectTimeout = connectTimeout ?? TimeSpan.FromSeconds(2),
            RequestTimeout = TimeSpan.FromSeconds(10),
        };

    /// <summary>Waits until the client lists exactly <paramref name="nodes"/>, then stores and reads back one value through its routing.</summary>
    internal static async Task RoutesToAsync(KvStore client, string what, params ServeProcess[] nodes)
    {
        var expected = nodes.Select(n => n.Server).Order(StringComparer.Ordinal).ToArray();
        await Poll.UntilAsync(() => client.Nodes.Select(n => n.Address).Order(StringComparer.Ordinal).SequenceEqual(expected),
            () => $"the client to discover {string.Join(",", expected)} {what} (it sees {string.Join(",", client.Nodes.Select(n => n.Address))})", Discovery);
        var key = TestValues.KeyMemory($"routed/{what}/{Guid.NewGuid():N}");
        Assert.Equal(KvStatus.Ok, (await client.PutAsync([key], [TestValues.For(what, 4096)]))[0]);
        Assert.Equal(TestValues.For(what, 4096), await client.GetAsync(key));
    }

    [Fact]
    public async Task A_node_registers_over_rediss_with_redis_ca_and_a_client_with_ca_in_the_url_discovers_it()
    {
        using var certs = TestCertificates.Create();
        using var redis = RedisProcess.StartTls(certs);
        var cluster = NewCluster();
        var url = $"rediss://127.0.0.1:{redis.TlsPort}";
        await using var node = await StartNodeAsync(url, cluster, "--redis-ca", certs.CaFile);
        Assert.Contains($"via {url} as", node.Stdout);

        await using var client = await KvStore.ConnectAsync(ClientOptions($"{url}?ca={certs.CaFile}", cluster));
        await RoutesToAsync(client, "over TLS", node);
        // The record is in the server behind the TLS port (read back over its plain port).
        Assert.Contains(node.Server, await redis.CommandAsync(["HKEYS", $"kvasir:{{{cluster}}}:records"]));
    }

    [Fact]
    public async Task A_rediss_server_whose_certificate_the_given_ca_did_not_sign_is_refused_with_the_reason()
    {
        using var certs = TestCertificates.Create();
        using var redis = RedisProcess.StartTls(certs);
        var cluster = NewCluster();
        var url = $"rediss://127.0.0.1:{redis.TlsPort}";

        // A refusal comes back within one TLS handshake; the long connect timeout only keeps a loaded machine's slow
        // handshake from ending as a timeout before the refusal's reason is known (seen in full runs at load 50).
        var ex = await Assert.ThrowsAsync<KvasirException>(() => KvStore.ConnectAsync(ClientOptions(url, cluster, ca: certs.OtherCaFile, connectTimeout: TimeSpan.FromSeconds(20))));
        Assert.True(ex.Message.Contains($"TLS refused: the server's TLS certificate (CN={TestCertificates.NodeName}, issued by CN=Kvasir Test CA) is not signed by the CA in {certs.OtherCaFile}", StringComparison.Ordinal), ex.Message);
        Assert.DoesNotContain('\n', ex.Message);

        // Without a CA the system's roots do not trust the throwaway CA either.
        var noCa = await Assert.ThrowsAsync<KvasirException>(() => KvStore.ConnectAsync(ClientOptions(url, cluster, connectTimeout: TimeSpan.FromSeconds(20))));
        Assert.True(noCa.Message.Contains("is not trusted by this host", StringComparison.Ordinal), noCa.Message);

        // A node with the wrong CA serves on, unregistered, and says why.
        await using var node = await StartNodeAsync(url, cluster, "--redis-ca", certs.OtherCaFile);
        await using var direct = await KvStore.ConnectAsync(new KvStoreOptions { Server = node.Server });
        await Poll.UntilAsync(async () => (await direct.StatsAsync())["cluster_state"] == 3, "the node with the wrong CA to report itself degraded", Discovery);
        await Poll.UntilAsync(() => (node.Stdout + node.Stderr).Contains("is not signed by the CA in", StringComparison.Ordinal),
            () => $"the node to log the TLS refusal; it logged: {node.Stdout} {node.Stderr}");
        Assert.Equal("", await redis.CommandAsync(["HKEYS", $"kvasir:{{{cluster}}}:records"]));
    }

    [Fact]
    public async Task An_acl_user_registers_and_discovers_with_its_password_and_a_wrong_password_is_refused()
    {
        using var redis = RedisProcess.Start("--requirepass", "admin-pw");
        // A user that may touch only Kvasir's keys and channels.
        Assert.Equal("OK", await redis.CommandAsync(["ACL", "SETUSER", "kvnode", "on", ">node-pw", "~kvasir:*", "&kvasir:*", "+@all"], password: "admin-pw"));
        var cluster = NewCluster();
        await using var node = await StartNodeAsync($"redis://kvnode:node-pw@127.0.0.1:{redis.Port}", cluster);
        Assert.Contains($"via redis://kvnode@127.0.0.1:{redis.Port} as", node.Stdout);   // the password is not printed
        Assert.DoesNotContain("node-pw", node.Stdout + node.Stderr);

        await using var asUser = await KvStore.ConnectAsync(ClientOptions($"redis://kvnode:node-pw@127.0.0.1:{redis.Port}", cluster));
        await RoutesToAsync(asUser, "as an ACL user", node);
        // Password only: the default user.
        await using var asDefault = await KvStore.ConnectAsync(ClientOptions($"redis://:admin-pw@127.0.0.1:{redis.Port}", cluster));
        await RoutesToAsync(asDefault, "with a password only", node);

        var wrong = await Assert.ThrowsAsync<KvasirException>(() => KvStore.ConnectAsync(ClientOptions($"redis://kvnode:not-it@127.0.0.1:{redis.Port}", cluster)));
        Assert.True(wrong.Message.Contains("authentication failed", StringComparison.Ordinal), wrong.Message);
        Assert.DoesNotContain("not-it", wrong.Message);
        var none = await Assert.ThrowsAsync<KvasirException>(() => KvStore.ConnectAsync(ClientOptions($"redis://127.0.0.1:{redis.Port}", cluster)));
        Assert.True(none.Message.Contains("authentication failed", StringComparison.Ordinal), none.Message);
    }
}
