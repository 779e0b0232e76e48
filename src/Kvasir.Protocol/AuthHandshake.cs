using System.Security.Cryptography;
using System.Text;

namespace Kvasir.Protocol;

/// <summary>
/// Mutual HMAC-SHA256 challenge-response. The node sends a random 32-byte server nonce in its
/// HELLO reply; the client answers with its own nonce and
/// <c>HMAC(key, "KVASIR-AUTH-1/client" ‖ server nonce ‖ client nonce)</c>; the node checks it in
/// constant time and answers with <c>HMAC(key, "KVASIR-AUTH-1/server" ‖ server nonce ‖ client nonce)</c>,
/// which the client checks in turn. Distinct labels stop a reflected proof from passing. The transfer
/// engine runs the same handshake with its own labels (<see cref="AuthLabels.Transfer"/>), so a proof
/// made for a cache node never passes at a transfer engine, or back.
/// </summary>
public static class AuthHandshake
{
    /// <summary>Key length in bytes (given as 64 hex characters).</summary>
    public const int KeyBytes = 32;


    /// <summary>Parses a 64-hex-character key. Throws <see cref="FormatException"/> with the reason.</summary>
    public static byte[] ParseKey(string hex)
    {
        ArgumentNullException.ThrowIfNull(hex);
        hex = hex.Trim();
        if (hex.Length != 2 * KeyBytes)
            throw new FormatException($"auth key must be {2 * KeyBytes} hex characters (32 bytes), got {hex.Length}");
        try { return Convert.FromHexString(hex); }
        catch (FormatException) { throw new FormatException("auth key must contain only hex characters 0-9 a-f"); }
    }

    public static byte[] NewNonce() => RandomNumberGenerator.GetBytes(ProtocolLimits.NonceBytes);

    /// <summary>The cache node's client proof (labels <see cref="AuthLabels.Node"/>).</summary>
    public static byte[] ClientProof(ReadOnlySpan<byte> key, ReadOnlySpan<byte> serverNonce, ReadOnlySpan<byte> clientNonce)
        => ClientProof(AuthLabels.Node, key, serverNonce, clientNonce);

    /// <summary>The cache node's server proof (labels <see cref="AuthLabels.Node"/>).</summary>
    public static byte[] ServerProof(ReadOnlySpan<byte> key, ReadOnlySpan<byte> serverNonce, ReadOnlySpan<byte> clientNonce)
        => ServerProof(AuthLabels.Node, key, serverNonce, clientNonce);

    /// <summary>The client proof of the protocol that <paramref name="labels"/> names.</summary>
    public static byte[] ClientProof(AuthLabels labels, ReadOnlySpan<byte> key, ReadOnlySpan<byte> serverNonce, ReadOnlySpan<byte> clientNonce)
        => Proof(key, labels.Client, serverNonce, clientNonce);

    /// <summary>The server proof of the protocol that <paramref name="labels"/> names.</summary>
    public static byte[] ServerProof(AuthLabels labels, ReadOnlySpan<byte> key, ReadOnlySpan<byte> serverNonce, ReadOnlySpan<byte> clientNonce)
        => Proof(key, labels.Server, serverNonce, clientNonce);

    /// <summary>Constant-time comparison of two proofs.</summary>
    public static bool ProofsEqual(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual)
        => CryptographicOperations.FixedTimeEquals(expected, actual);

    private static byte[] Proof(ReadOnlySpan<byte> key, ReadOnlySpan<byte> label, ReadOnlySpan<byte> serverNonce, ReadOnlySpan<byte> clientNonce)
    {
        if (key.Length != KeyBytes) throw new ArgumentException("auth key must be 32 bytes");
        Span<byte> message = stackalloc byte[label.Length + 2 * ProtocolLimits.NonceBytes];
        label.CopyTo(message);
        serverNonce.CopyTo(message[label.Length..]);
        clientNonce.CopyTo(message[(label.Length + ProtocolLimits.NonceBytes)..]);
        return HMACSHA256.HashData(key, message);
    }
}

/// <summary>
/// The two HMAC labels of one protocol's handshake: the client's proof is made with
/// <see cref="Client"/>, the server's with <see cref="Server"/>.
/// </summary>
public sealed class AuthLabels
{
    private readonly byte[] _client;
    private readonly byte[] _server;

    public AuthLabels(string client, string server)
    {
        ArgumentException.ThrowIfNullOrEmpty(client);
        ArgumentException.ThrowIfNullOrEmpty(server);
        if (client == server) throw new ArgumentException("the client and server labels must differ, or a reflected proof would pass");
        _client = Encoding.ASCII.GetBytes(client);
        _server = Encoding.ASCII.GetBytes(server);
    }

    /// <summary>The cache node's labels: "KVASIR-AUTH-1/client" and "KVASIR-AUTH-1/server" (docs/protocol.md).</summary>
    public static AuthLabels Node { get; } = new("KVASIR-AUTH-1/client", "KVASIR-AUTH-1/server");

    /// <summary>The transfer engine's labels: "KVASIR-XFER-1/client" and "KVASIR-XFER-1/server" (docs/transfer.md).</summary>
    public static AuthLabels Transfer { get; } = new("KVASIR-XFER-1/client", "KVASIR-XFER-1/server");

    public ReadOnlySpan<byte> Client => _client;

    public ReadOnlySpan<byte> Server => _server;
}
