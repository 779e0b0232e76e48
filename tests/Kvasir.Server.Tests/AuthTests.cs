using Kvasir.Protocol;
using Kvasir.Server.Tests.Support;
using static Kvasir.Server.Tests.Support.Frames;
using static Kvasir.TestSupport.TestValues;

namespace Kvasir.Server.Tests;

/// <summary>AUTH on the wire: required before anything else on a node with a key, mutual proofs, failures counted.</summary>
public sealed class AuthTests
{
    private static readonly byte[] AuthKey = Convert.FromHexString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");

    private static async Task<(RawConnection Connection, byte[] ServerNonce)> HelloAsync(TestNode node)
    {
        var (c, hello) = await RawConnection.ConnectHelloAsync(node.Port);
        Assert.True(hello.AuthRequired, "a node with a key must say auth_required = 1");
        Assert.Equal(32, hello.ServerNonce.Length);
        Assert.Contains(hello.ServerNonce, b => b != 0);
        return (c, hello.ServerNonce);
    }

    [Fact]
    public async Task With_the_right_proof_the_node_proves_itself_and_serves_requests()
    {
        await using var node = ServerNode.Start(authKey: AuthKey);
        var (c, serverNonce) = await HelloAsync(node);
        using var _c = c;
        var clientNonce = AuthHandshake.NewNonce();

        var reply = await c.RequestAsync(Auth(2, clientNonce, AuthHandshake.ClientProof(AuthKey, serverNonce, clientNonce)));
        RawConnection.AssertReply(reply, Opcode.Auth, 2);
        var serverProof = AuthReply.Read(reply.Meta).ServerProof;
        Assert.True(AuthHandshake.ProofsEqual(AuthHandshake.ServerProof(AuthKey, serverNonce, clientNonce), serverProof), "the node's proof does not verify");

        var witness = new Witness(c);
        await witness.RoundTripAsync();
        Assert.Equal(0L, node.Node.Counters.AuthFailures);

        // AUTH again after success is BAD_STATE.
        await c.SendAsync(Auth(9, clientNonce, AuthHandshake.ClientProof(AuthKey, serverNonce, clientNonce)));
        await c.AssertErrorThenClosedAsync(WireStatus.BadState, 9, Opcode.Auth);
    }

    [Fact]
    public async Task A_request_before_auth_on_a_node_with_a_key_is_auth_required_and_closes()
    {
        await using var node = ServerNode.Start(authKey: AuthKey);
        var (c, _) = await HelloAsync(node);
        using var _c = c;
        await c.SendAsync(Get(5, Key("k")));
        await c.AssertErrorThenClosedAsync(WireStatus.AuthRequired, 5, Opcode.Get);
        Assert.Equal(0L, node.Node.Counters.AuthFailures);
    }

    [Fact]
    public async Task A_second_hello_before_auth_is_bad_state()
    {
        await using var node = ServerNode.Start(authKey: AuthKey);
        var (c, _) = await HelloAsync(node);
        using var _c = c;
        await c.SendAsync(Hello(5));
        await c.AssertErrorThenClosedAsync(WireStatus.BadState, 5, Opcode.Hello);
    }

    [Theory]
    [InlineData("flipped bit")]
    [InlineData("server proof reflected")]
    [InlineData("other key")]
    public async Task A_wrong_proof_is_auth_failed_closes_and_is_counted_while_authenticated_connections_keep_working(string how)
    {
        await using var node = ServerNode.Start(authKey: AuthKey);
        var (good, goodNonce) = await HelloAsync(node);
        using var _g = good;
        var goodClientNonce = AuthHandshake.NewNonce();
        RawConnection.AssertReply(await good.RequestAsync(Auth(2, goodClientNonce, AuthHandshake.ClientProof(AuthKey, goodNonce, goodClientNonce))), Opcode.Auth, 2);
        var witness = new Witness(good);
        await witness.RoundTripAsync();

        var (c, serverNonce) = await HelloAsync(node);
        using var _c = c;
        var clientNonce = AuthHandshake.NewNonce();
        var proof = how switch
        {
            "flipped bit" => AuthHandshake.ClientProof(AuthKey, serverNonce, clientNonce),
            "server proof reflected" => AuthHandshake.ServerProof(AuthKey, serverNonce, clientNonce),
            _ => AuthHandshake.ClientProof(AuthHandshake.NewNonce(), serverNonce, clientNonce),
        };
        if (how == "flipped bit") proof[17] ^= 0x01;
        await c.SendAsync(Auth(7, clientNonce, proof));
        await c.AssertErrorThenClosedAsync(WireStatus.AuthFailed, 7, Opcode.Auth);
        Assert.Equal(1L, node.Node.Counters.AuthFailures);
        await witness.RoundTripAsync();
    }

    [Fact]
    public async Task Failed_auth_slows_the_next_attempts_from_that_address_while_other_clients_authenticate()
    {
        // Backoff: after 1, 2, 3 failures from 127.0.0.2 its next AUTH waits 100, 200, 400 ms before it is checked.
        await using var node = ServerNode.Start(authKey: AuthKey);
        var waited = new List<TimeSpan>();
        for (int attempt = 1; attempt <= 4; attempt++)
        {
            var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            socket.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Parse("127.0.0.2"), 0));
            await socket.ConnectAsync(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, node.Port));
            using var c = RawConnection.Adopt(socket);
            var serverNonce = (await c.HelloAsync()).ServerNonce;
            var clientNonce = AuthHandshake.NewNonce();
            var started = System.Diagnostics.Stopwatch.StartNew();
            await c.SendAsync(Auth(2, clientNonce, AuthHandshake.ClientProof(AuthHandshake.NewNonce(), serverNonce, clientNonce)));
            await c.AssertErrorThenClosedAsync(WireStatus.AuthFailed, 2, Opcode.Auth);
            waited.Add(started.Elapsed);
        }
        Assert.True(waited[3] >= TimeSpan.FromMilliseconds(390), $"the 4th failed attempt was answered after {waited[3].TotalMilliseconds:0} ms; after 3 failures it must wait 400 ms");
        Assert.Equal(4L, node.Node.Counters.AuthFailures);

        // A client from another address still authenticates and is served.
        var (good, goodNonce) = await HelloAsync(node);
        using var _g = good;
        var nonce = AuthHandshake.NewNonce();
        RawConnection.AssertReply(await good.RequestAsync(Auth(3, nonce, AuthHandshake.ClientProof(AuthKey, goodNonce, nonce))), Opcode.Auth, 3);
        await new Witness(good).RoundTripAsync();
    }

    [Fact]
    public async Task Auth_metadata_that_is_not_64_bytes_is_bad_frame()
    {
        await using var node = ServerNode.Start(authKey: AuthKey);
        var (c, _) = await HelloAsync(node);
        using var _c = c;
        await c.SendAsync(Frame(Opcode.Auth, 3, new byte[63]));
        await c.AssertErrorThenClosedAsync(WireStatus.BadFrame, 3, Opcode.Auth);
        Assert.Equal(0L, node.Node.Counters.AuthFailures);
    }
}
