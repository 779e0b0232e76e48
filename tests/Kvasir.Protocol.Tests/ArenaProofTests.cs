using Kvasir.Protocol.Tests.Vectors;

namespace Kvasir.Protocol.Tests;

public sealed class ArenaProofTests
{
    [Fact]
    public void The_vectors_proof_is_the_hmac_of_the_challenge_under_the_arena_secret()
    {
        var withArena = VectorFile.Vectors.Select(v => v!.AsObject()).Where(v => v["arena"] is not null).ToList();
        Assert.Equal(["shm_info_reply_challenge", "alloc_request_ttl_mapped"], withArena.Select(v => (string)v["name"]!));
        foreach (var v in withArena)
        {
            var a = v["arena"]!;
            byte[] secret = VectorFile.Hex(a["secret"]), challenge = VectorFile.Hex(a["challenge"]), proof = VectorFile.Hex(a["proof"]);
            Assert.Equal(proof, ArenaProof.Compute(secret, challenge));
            Assert.True(ArenaProof.Verify(secret, challenge, proof));
            var other = (byte[])challenge.Clone();
            other[0] ^= 1;
            Assert.False(ArenaProof.Verify(secret, other, proof));   // a proof is worth nothing under another connection's challenge
            Assert.False(ArenaProof.Verify(secret, challenge, proof.AsSpan(0, 31)));
        }
    }
}
