using System.Security.Cryptography;
using System.Text;

namespace Kvasir.Protocol;

/// <summary>
/// Mutual HMAC-SHA256 challenge-response. The node sends a random 32-byte server nonce in its
/// HELLO reply; the client answers with its own nonce and
/// <c>HMAC(key, "KVASIR-AUTH-1/client" ‖ server nonce ‖ client nonce)</c>; the node checks it in
/// constant time and answers with <c>HMAC(key, "KVASIR-AUTH-1/server" ‖ server nonce ‖ client nonce)</c>,
/// which the client checks in turn. Distinct labels stop a reflected proof from passing.
/// </summary>
public static class AuthHandshake
{
    /// <summary>Key length in bytes (given as 64 hex characters).</summary>
    public const int KeyBytes = 32;

    private static readonly byte[] ClientLabel = Encoding.ASCII.GetBytes("KVASIR-AUTH-1/client");
    private static readonly byte[] ServerLabel = Encoding.ASCII.GetBytes("KVASIR-AUTH-1/server");

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

    public static byte[] ClientProof(ReadOnlySpan<byte> key, ReadOnlySpan<byte> serverNonce, ReadOnlySpan<byte> clientNonce)
        => Proof(key, ClientLabel, serverNonce, clientNonce);

    public static byte[] ServerProof(ReadOnlySpan<byte> key, ReadOnlySpan<byte> serverNonce, ReadOnlySpan<byte> clientNonce)
        => Proof(key, ServerLabel, serverNonce, clientNonce);

    /// <summary>Constant-time comparison of two proofs.</summary>
    public static bool ProofsEqual(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual)
        => CryptographicOperations.FixedTimeEquals(expected, actual);

    private static byte[] Proof(ReadOnlySpan<byte> key, byte[] label, ReadOnlySpan<byte> serverNonce, ReadOnlySpan<byte> clientNonce)
    {
        if (key.Length != KeyBytes) throw new ArgumentException("auth key must be 32 bytes");
        Span<byte> message = stackalloc byte[label.Length + 2 * ProtocolLimits.NonceBytes];
        label.CopyTo(message);
        serverNonce.CopyTo(message[label.Length..]);
        clientNonce.CopyTo(message[(label.Length + ProtocolLimits.NonceBytes)..]);
        return HMACSHA256.HashData(key, message);
    }
}
