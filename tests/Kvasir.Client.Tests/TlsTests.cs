using Kvasir.Client;
using Kvasir.Net;
using Kvasir.Server;
using Kvasir.Storage;
using static Kvasir.Client.Tests.NodeHarness;

namespace Kvasir.Client.Tests;

/// <summary>
/// TLS on the data plane against real nodes on 127.0.0.1 (port 0), with certificates made for each test:
/// round trips, TLS with HMAC auth, each refusal with its reason, client certificates, and shared memory
/// on a TLS node.
/// </summary>
public sealed class TlsTests : IDisposable
{
    private const string NodeKey = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    private readonly TestCertificates _certs = TestCertificates.Create();
    private readonly ListLoggerFactory _log = new();

    public void Dispose() => _certs.Dispose();

    private TestNode StartNode(bool tls = true, bool requireClientCert = false, string? authKey = null, bool shm = false) => TestNode.Start(new NodeOptions
    {
        Port = 0,
        Store = new StoreOptions { Capacity = 128L << 20 },
        TlsCertFile = tls ? _certs.NodeCertFile : null,
        TlsKeyFile = tls ? _certs.NodeKeyFile : null,
        TlsClientCaFile = requireClientCert ? _certs.CaFile : null,
        AuthKey = authKey is null ? null : Convert.FromHexString(authKey),
        SharedMemory = shm,
    }, _log);

    private KvStoreOptions Client(TestNode node, KvTlsOptions? tls, KvTransportKind transport = KvTransportKind.Tcp, string? authKey = null) => new()
    {
        Server = node.Address,
        Tls = tls,
        Transport = transport,
        AuthKey = authKey,
        ConnectTimeout = TimeSpan.FromSeconds(10),
    };

    private KvTlsOptions TrustingCa => new() { CaFile = _certs.CaFile };

    [Fact]
    public async Task Put_get_and_batches_of_every_size_round_trip_over_tls()
    {
        await using var node = StartNode();
        await using var store = await KvStore.ConnectAsync(Client(node, TrustingCa));
        Assert.Equal(KvTransportKind.Tcp, store.Transport);
        // Sizes around the receive buffer (64 KiB), the coalesce limit (8 KiB) and a TLS record (16 KiB), plus 1 MiB values.
        int[] sizes = [0, 1, 8 * 1024, 8 * 1024 + 1, 16 * 1024 + 7, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1, 1 << 20, (1 << 20) + 3];
        var keys = sizes.Select((_, i) => Key($"k{i}")).ToArray();
        var values = sizes.Select((s, i) => TestValues.Value(i + 1, s)).ToArray();
        Assert.All(await store.PutAsync(keys, values.Select(v => (ReadOnlyMemory<byte>)v).ToArray()), s => Assert.Equal(KvStatus.Ok, s));
        for (int i = 0; i < sizes.Length; i++) Assert.Equal(values[i], await store.GetAsync(keys[i]));
        var batch = new byte[sizes.Length][];
        for (int i = 0; i < sizes.Length; i++) batch[i] = new byte[sizes[i]];
        var results = await store.GetAsync(keys, batch.Select(b => (Memory<byte>)b).ToArray());
        for (int i = 0; i < sizes.Length; i++) Assert.Equal(new KvGetResult(KvStatus.Ok, sizes[i]), results[i]);
        for (int i = 0; i < sizes.Length; i++) Assert.Equal(values[i], batch[i]);
        Assert.Equal(new[] { 1, 0 }, await store.ExistsAsync([keys[3], Key("absent")]));
    }

    [Fact]
    public async Task Tls_and_hmac_auth_work_together_and_the_key_is_still_checked()
    {
        await using var node = StartNode(authKey: NodeKey);
        await using (var store = await KvStore.ConnectAsync(Client(node, TrustingCa, authKey: NodeKey)))
        {
            Assert.Equal(KvStatus.Ok, (await store.PutAsync([Key("a")], [TestValues.Value(5, 300_000)]))[0]);
            Assert.Equal(TestValues.Value(5, 300_000), await store.GetAsync(Key("a")));
        }
        var ex = await Assert.ThrowsAsync<KvasirAuthException>(() => KvStore.ConnectAsync(Client(node, TrustingCa)));
        Assert.Contains("requires an auth key", ex.Message);
    }

    [Fact]
    public async Task A_plaintext_client_is_refused_by_a_tls_node_with_a_message_saying_tls_is_required()
    {
        await using var node = StartNode();
        var ex = await Assert.ThrowsAsync<KvasirException>(() => KvStore.ConnectAsync(Client(node, tls: null)));
        Assert.Contains("requires TLS", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
        await Poll.UntilAsync(() => node.Counters.ProtocolErrors == 1, "the node to count the plaintext client as one protocol error");
        Assert.Single(_log.Messages, m => m.StartsWith("Warning:", StringComparison.Ordinal) && m.Contains("requires TLS"));
        // The node goes on serving TLS clients.
        await using var store = await KvStore.ConnectAsync(Client(node, TrustingCa));
        Assert.Equal(KvStatus.Ok, (await store.PutAsync([Key("after")], [TestValues.Value(2, 10)]))[0]);
    }

    [Fact]
    public async Task Many_plaintext_clients_at_a_tls_node_leave_few_log_lines_and_no_leak()
    {
        await using var node = StartNode();
        for (int i = 0; i < 30; i++)
            await Assert.ThrowsAsync<KvasirException>(() => KvStore.ConnectAsync(Client(node, tls: null)));
        await Poll.UntilAsync(() => node.Counters.ProtocolErrors == 30, "the node to count 30 refused plaintext clients");
        await Poll.UntilAsync(() => node.Counters.Connections == 0, "the refused connections to close");
        // LogLimiter: at most 10 warnings per 10 s window for connection problems.
        Assert.InRange(_log.Messages.Count(m => m.Contains("requires TLS")), 1, 10);
    }

    [Fact]
    public async Task A_tls_client_is_refused_by_a_plaintext_node_with_a_message_naming_what_to_drop()
    {
        await using var node = StartNode(tls: false);
        var ex = await Assert.ThrowsAsync<KvasirException>(() => KvStore.ConnectAsync(Client(node, TrustingCa)));
        Assert.Contains("does not speak TLS", ex.Message);
        Assert.Contains("drop the TLS options", ex.Message);
        await Poll.UntilAsync(() => node.Counters.ProtocolErrors == 1, "the plaintext node to count the TLS handshake as one protocol error");
    }

    [Fact]
    public async Task A_node_certificate_from_another_ca_is_refused_with_the_chain_reason()
    {
        await using var node = StartNode();
        var ex = await Assert.ThrowsAsync<KvasirException>(() => KvStore.ConnectAsync(Client(node, new KvTlsOptions { CaFile = _certs.OtherCaFile })));
        Assert.Contains("certificate was rejected", ex.Message);
        Assert.Contains("chain is not trusted", ex.Message);
    }

    [Fact]
    public async Task A_wrong_server_name_is_refused_and_the_right_name_override_is_accepted()
    {
        await using var node = StartNode();
        var ex = await Assert.ThrowsAsync<KvasirException>(() => KvStore.ConnectAsync(Client(node, TrustingCa with { ServerName = "not-the-node.test" })));
        Assert.Contains("not issued for 'not-the-node.test'", ex.Message);
        // The certificate names kvasir-node.test as well as 127.0.0.1: connecting by IP while checking that name works.
        await using var store = await KvStore.ConnectAsync(Client(node, TrustingCa with { ServerName = TestCertificates.NodeName }));
        Assert.Equal(KvStatus.Ok, (await store.PutAsync([Key("n")], [TestValues.Value(3, 10)]))[0]);
    }

    [Fact]
    public async Task A_node_requiring_client_certificates_accepts_one_its_ca_signed_and_refuses_none_or_another_cas()
    {
        await using var node = StartNode(requireClientCert: true);
        var missing = await Assert.ThrowsAsync<KvasirException>(() => KvStore.ConnectAsync(Client(node, TrustingCa)));
        Assert.Contains("client certificate", missing.Message);
        await Poll.UntilAsync(() => _log.Messages.Any(m => m.Contains("TLS handshake failed: the client presented no certificate")),
            "the node to log why it refused the client without a certificate");
        var foreign = await Assert.ThrowsAsync<KvasirException>(() => KvStore.ConnectAsync(Client(node,
            TrustingCa with { CertFile = _certs.OtherClientCertFile, KeyFile = _certs.OtherClientKeyFile })));
        Assert.Contains(node.Address, foreign.Message);
        await Poll.UntilAsync(() => _log.Messages.Any(m => m.Contains("TLS handshake failed: the client's certificate is not signed by the client CA")),
            "the node to log why it refused the client certificate from another CA");
        await using var store = await KvStore.ConnectAsync(Client(node, TrustingCa with { CertFile = _certs.ClientCertFile, KeyFile = _certs.ClientKeyFile }));
        Assert.Equal(KvStatus.Ok, (await store.PutAsync([Key("c")], [TestValues.Value(4, 70_000)]))[0]);
        Assert.Equal(TestValues.Value(4, 70_000), await store.GetAsync(Key("c")));
    }

    [Fact]
    public async Task Shared_memory_still_carries_the_values_on_a_tls_node()
    {
        await using var node = StartNode(shm: true);
        await using var store = await KvStore.ConnectAsync(Client(node, TrustingCa, KvTransportKind.Shm));
        Assert.Equal(KvTransportKind.Shm, store.Transport);
        var value = TestValues.Value(9, 2 << 20);
        Assert.Equal(KvStatus.Ok, (await store.PutAsync([Key("s")], [value]))[0]);
        Assert.Equal(value, await store.GetAsync(Key("s")));
        // A plain TCP client with TLS reads what went through the arena.
        await using var tcp = await KvStore.ConnectAsync(Client(node, TrustingCa));
        Assert.Equal(value, await tcp.GetAsync(Key("s")));
    }

    [Fact]
    public void Missing_or_mismatched_tls_files_are_refused_with_the_file_named()
    {
        var missing = Assert.Throws<TlsConfigurationException>(() => new CacheNode(new NodeOptions
        {
            Port = 0,
            Store = new StoreOptions { Capacity = 16L << 20, MaxValueBytes = 1 << 20 },
            TlsCertFile = Path.Combine(_certs.Directory, "absent.pem"),
            TlsKeyFile = _certs.NodeKeyFile,
        }));
        Assert.Contains("absent.pem", missing.Message);
        var mismatched = Assert.Throws<TlsConfigurationException>(() => new CacheNode(new NodeOptions
        {
            Port = 0,
            Store = new StoreOptions { Capacity = 16L << 20, MaxValueBytes = 1 << 20 },
            TlsCertFile = _certs.NodeCertFile,
            TlsKeyFile = _certs.ClientKeyFile,
        }));
        Assert.Contains(_certs.NodeCertFile, mismatched.Message);
        Assert.Throws<ArgumentException>(() => new NodeOptions { TlsCertFile = _certs.NodeCertFile }.Validate());
    }

    [Fact]
    public async Task A_client_with_an_unreadable_ca_file_fails_before_connecting_with_the_file_named()
    {
        var ex = await Assert.ThrowsAsync<KvasirException>(() => KvStore.ConnectAsync(new KvStoreOptions
        {
            Server = "127.0.0.1:1",
            Tls = new KvTlsOptions { CaFile = _certs.NodeKeyFile },
        }));
        Assert.Contains(_certs.NodeKeyFile, ex.Message);
    }
}
