namespace Kvasir.Protocol.Tests;

public class AuthHandshakeTests
{
    private static readonly byte[] Key = Enumerable.Range(0, 32).Select(i => (byte)i).ToArray();
    private static readonly byte[] ServerNonce = Enumerable.Range(0x40, 32).Select(i => (byte)i).ToArray();
    private static readonly byte[] ClientNonce = Enumerable.Range(0x60, 32).Select(i => (byte)i).ToArray();

    [Fact]
    public void Client_and_server_proofs_over_the_same_nonces_differ()
    {
        var client = AuthHandshake.ClientProof(Key, ServerNonce, ClientNonce);
        var server = AuthHandshake.ServerProof(Key, ServerNonce, ClientNonce);
        Assert.Equal(32, client.Length);
        Assert.Equal(32, server.Length);
        Assert.False(AuthHandshake.ProofsEqual(client, server));
    }

    [Fact]
    public void A_proof_is_deterministic_for_the_same_key_and_nonces()
    {
        Assert.True(AuthHandshake.ProofsEqual(
            AuthHandshake.ClientProof(Key, ServerNonce, ClientNonce),
            AuthHandshake.ClientProof(Key, ServerNonce, ClientNonce)));
    }

    [Fact]
    public void A_proof_made_with_a_wrong_key_fails_ProofsEqual()
    {
        var wrongKey = (byte[])Key.Clone();
        wrongKey[31] ^= 1;
        Assert.False(AuthHandshake.ProofsEqual(
            AuthHandshake.ClientProof(Key, ServerNonce, ClientNonce),
            AuthHandshake.ClientProof(wrongKey, ServerNonce, ClientNonce)));
    }

    [Fact]
    public void Swapping_the_nonces_changes_the_proof()
    {
        Assert.False(AuthHandshake.ProofsEqual(
            AuthHandshake.ClientProof(Key, ServerNonce, ClientNonce),
            AuthHandshake.ClientProof(Key, ClientNonce, ServerNonce)));
    }

    [Fact]
    public void The_proof_is_HMAC_SHA256_over_label_then_server_nonce_then_client_nonce()
    {
        var message = "KVASIR-AUTH-1/client"u8.ToArray().Concat(ServerNonce).Concat(ClientNonce).ToArray();
        Assert.Equal(System.Security.Cryptography.HMACSHA256.HashData(Key, message), AuthHandshake.ClientProof(Key, ServerNonce, ClientNonce));
        var serverMessage = "KVASIR-AUTH-1/server"u8.ToArray().Concat(ServerNonce).Concat(ClientNonce).ToArray();
        Assert.Equal(System.Security.Cryptography.HMACSHA256.HashData(Key, serverMessage), AuthHandshake.ServerProof(Key, ServerNonce, ClientNonce));
    }

    [Fact]
    public void ProofsEqual_rejects_a_proof_of_another_length()
    {
        var proof = AuthHandshake.ClientProof(Key, ServerNonce, ClientNonce);
        Assert.False(AuthHandshake.ProofsEqual(proof, proof.AsSpan(0, 31)));
    }

    [Fact]
    public void ParseKey_accepts_64_hex_characters_in_either_case_with_surrounding_spaces()
    {
        var hex = Convert.ToHexString(Key);
        Assert.Equal(Key, AuthHandshake.ParseKey(hex));
        Assert.Equal(Key, AuthHandshake.ParseKey("  " + hex.ToLowerInvariant() + "\n"));
    }

    [Theory]
    [InlineData(63)]
    [InlineData(65)]
    [InlineData(0)]
    public void ParseKey_rejects_a_key_that_is_not_64_characters_and_says_how_long_it_was(int length)
    {
        var ex = Assert.Throws<FormatException>(() => AuthHandshake.ParseKey(new string('a', length)));
        Assert.Contains("64 hex characters", ex.Message, StringComparison.Ordinal);
        Assert.Contains($"got {length}", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ParseKey_rejects_non_hex_characters_with_a_clear_message()
    {
        var ex = Assert.Throws<FormatException>(() => AuthHandshake.ParseKey(new string('a', 63) + "g"));
        Assert.Contains("hex characters", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_proof_with_a_key_that_is_not_32_bytes_is_refused()
    {
        Assert.Throws<ArgumentException>(() => AuthHandshake.ClientProof(new byte[31], ServerNonce, ClientNonce));
    }

    [Fact]
    public void NewNonce_returns_32_fresh_random_bytes()
    {
        var a = AuthHandshake.NewNonce();
        var b = AuthHandshake.NewNonce();
        Assert.Equal(ProtocolLimits.NonceBytes, a.Length);
        Assert.NotEqual(a, b);
    }

    [Fact]
    public void Transfer_labels_give_other_proofs_than_the_nodes_and_the_node_overloads_use_the_node_labels()
    {
        Assert.Equal(AuthHandshake.ClientProof(Key, ServerNonce, ClientNonce), AuthHandshake.ClientProof(AuthLabels.Node, Key, ServerNonce, ClientNonce));
        Assert.Equal(AuthHandshake.ServerProof(Key, ServerNonce, ClientNonce), AuthHandshake.ServerProof(AuthLabels.Node, Key, ServerNonce, ClientNonce));
        Assert.False(AuthHandshake.ProofsEqual(
            AuthHandshake.ClientProof(AuthLabels.Node, Key, ServerNonce, ClientNonce),
            AuthHandshake.ClientProof(AuthLabels.Transfer, Key, ServerNonce, ClientNonce)));
        var message = "KVASIR-XFER-1/server"u8.ToArray().Concat(ServerNonce).Concat(ClientNonce).ToArray();
        Assert.Equal(System.Security.Cryptography.HMACSHA256.HashData(Key, message), AuthHandshake.ServerProof(AuthLabels.Transfer, Key, ServerNonce, ClientNonce));
    }

    [Fact]
    public void Labels_that_are_equal_are_refused()
    {
        Assert.Throws<ArgumentException>(() => new AuthLabels("X/1", "X/1"));
    }
}
