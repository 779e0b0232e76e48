using System.Security.Cryptography;

namespace Kvasir.Protocol;

/// <summary>
/// The proof that a connection's client can read the node's arena file (feature <see cref="ProtocolFeatures.ArenaProof"/>,
/// docs/protocol.md § Writes without the node's passes). The node keeps a random 32-byte secret in the arena file itself,
/// at offset <c>arena_length</c> (just past the bytes clients map), and sends every connection a random challenge in
/// SHM_INFO. The proof is <c>HMAC-SHA256(secret, "KVASIR-SHM-1/alloc" ‖ challenge)</c>: only a process that can read
/// the arena file can make it, and one seen on the wire is worth nothing on another connection.
/// </summary>
public static class ArenaProof
{
    public const int SecretBytes = 32;

    public const int ChallengeBytes = 16;

    public const int ProofBytes = 32;

    private static ReadOnlySpan<byte> Label => "KVASIR-SHM-1/alloc"u8;

    public static byte[] Compute(ReadOnlySpan<byte> secret, ReadOnlySpan<byte> challenge)
    {
        if (secret.Length != SecretBytes) throw new ArgumentException($"the arena secret is {SecretBytes} bytes");
        if (challenge.Length != ChallengeBytes) throw new ArgumentException($"the challenge is {ChallengeBytes} bytes");
        Span<byte> message = stackalloc byte[Label.Length + ChallengeBytes];
        Label.CopyTo(message);
        challenge.CopyTo(message[Label.Length..]);
        return HMACSHA256.HashData(secret, message);
    }

    /// <summary>Constant-time check of a client's proof.</summary>
    public static bool Verify(ReadOnlySpan<byte> secret, ReadOnlySpan<byte> challenge, ReadOnlySpan<byte> proof)
        => proof.Length == ProofBytes && CryptographicOperations.FixedTimeEquals(Compute(secret, challenge), proof);
}
