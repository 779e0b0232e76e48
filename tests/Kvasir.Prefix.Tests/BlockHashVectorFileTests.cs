namespace Kvasir.Prefix.Tests;

/// <summary>tests/vectors/block_hashes.json (written by the Python generator with plain hashlib): every case byte for byte.</summary>
public sealed class BlockHashVectorFileTests
{
    private const string File = "block_hashes.json";
    private const string Generator = "tests/vectors/gen_block_hashes.py";

    [Fact]
    public void Every_case_of_the_golden_file_hashes_to_its_recorded_hashes_and_keys()
    {
        var root = VectorFiles.Load(File, Generator);
        Assert.Equal(1, (int)root["version"]!);
        var cases = root["cases"]!.AsArray();
        Assert.NotEmpty(cases);
        foreach (var node in cases)
        {
            var c = node!.AsObject();
            string name = (string)c["name"]!;
            var extra = c["extra_keys"]?.AsArray().Select(k => (string)k!).ToArray() ?? [];
            var tokens = c["tokens"]!.AsArray().Select(t => (long)t!).ToArray();
            var parent = c["parent"] is { } p ? BlockHash.Parse((string)p!) : BlockHash.Zero;
            var hashes = new BlockHasher((int)c["block_size"]!, extra).ComputeBlockHashes(tokens, parent);
            var expected = c["hashes"]!.AsArray().Select(h => (string)h!).ToArray();
            var keys = c["keys"]!.AsArray().Select(k => (string)k!).ToArray();
            Assert.True(expected.SequenceEqual(hashes.Select(h => h.Hex)), $"case {name}: hashes differ: expected [{string.Join(", ", expected)}], got [{string.Join(", ", hashes.Select(h => h.Hex))}]");
            Assert.True(keys.SequenceEqual(hashes.Select(h => h.StoreKeyString)), $"case {name}: store keys differ");
        }
    }

    [Fact]
    public void Every_invalid_case_of_the_golden_file_is_rejected()
    {
        var root = VectorFiles.Load(File, Generator);
        var invalid = root["invalid"]!.AsArray();
        Assert.NotEmpty(invalid);
        foreach (var node in invalid)
        {
            var c = node!.AsObject();
            var tokens = c["tokens"]!.AsArray().Select(t => (long)t!).ToArray();
            var error = Record.Exception(() => new BlockHasher((int)c["block_size"]!).ComputeBlockHashes(tokens));
            Assert.True(error is ArgumentOutOfRangeException or ConfigInvalidException, $"invalid case {(string)c["name"]!} was accepted or failed oddly: {error}");
        }
    }
}
