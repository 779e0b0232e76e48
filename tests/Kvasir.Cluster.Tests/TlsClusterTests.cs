using Kvasir.Cli.Tests;
using Kvasir.Client;
using static Kvasir.Cluster.Tests.SecureRegistryTests;

namespace Kvasir.Cluster.Tests;

/// <summary>
/// Nodes whose data port speaks TLS (`kvasir serve --tls-cert/--tls-key`) advertise it in their registry
/// record: a cluster client with TLS settings routes to them, one without is told which option it lacks.
/// </summary>
public sealed class TlsClusterTests
{
    [Fact]
    public async Task Tls_nodes_advertise_tls_and_a_client_without_tls_settings_is_told_which_option_to_set()
    {
        using var certs = TestCertificates.Create();
        using var redis = RedisProcess.Start();
        var cluster = NewCluster();
        await using var a = await StartNodeAsync(redis.Url, cluster, "--tls-cert", certs.NodeCertFile, "--tls-key", certs.NodeKeyFile);
        await using var b = await StartNodeAsync(redis.Url, cluster, "--tls-cert", certs.NodeCertFile, "--tls-key", certs.NodeKeyFile);

        await using (var client = await KvStore.ConnectAsync(ClientOptions(redis.Url, cluster, tls: new KvTlsOptions { CaFile = certs.CaFile })))
            await RoutesToAsync(client, "over TLS", a, b);

        await using var registry = await RedisClusterRegistry.ConnectAsync(RedisUrl.Parse(redis.Url), cluster, TimeSpan.FromSeconds(2));
        Assert.All((await registry.ReadAsync()).Nodes, n => Assert.True(n.Tls, $"node {n.Id} does not advertise tls"));

        var log = new ListLoggerFactory();
        await using var plain = await KvStore.ConnectAsync(ClientOptions(redis.Url, cluster, log: log));
        await Poll.UntilAsync(() => plain.Nodes.Count == 2, "the plaintext client to discover both nodes", TimeSpan.FromSeconds(20));
        Assert.Equal(KvStatus.Unavailable, (await plain.PutAsync([TestValues.KeyMemory("k")], [TestValues.For("k", 100)]))[0]);
        Assert.Contains(log.Messages, m => m.Contains("requires TLS", StringComparison.Ordinal) && m.Contains("KvStoreOptions.Tls", StringComparison.Ordinal));
        // The refusal came from the record: neither node saw a plaintext HELLO.
        Assert.DoesNotContain("requires TLS", a.Stdout + a.Stderr + b.Stdout + b.Stderr, StringComparison.Ordinal);
    }
}
