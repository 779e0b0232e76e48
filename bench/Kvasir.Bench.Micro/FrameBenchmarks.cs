using BenchmarkDotNet.Attributes;
using Kvasir.Protocol;

namespace Kvasir.Bench.Micro;

/// <summary>
/// Frame encode/decode: the 32-byte header, the batch readers over 128 keys of 64 bytes, the GET reply parser and
/// the HELLO reply. The batch readers are ref structs over the metadata and should allocate nothing; GetReply.Read
/// returns an array of 128 entries and HelloReply.Read a record with its nonce and node id.
/// </summary>
[MemoryDiagnoser]
public class FrameBenchmarks
{
    private const int BatchKeys = 128;
    private const int KeyLength = 64;
    private const long ValueBytes = 64 << 10;

    private readonly byte[] _headerBuffer = new byte[ProtocolLimits.HeaderSize];
    private FrameHeader _header;
    private byte[] _putMeta = null!;
    private byte[] _keyBatchMeta = null!;
    private byte[] _getReplyMeta = null!;
    private long _getReplyPayload;
    private HelloReply _hello = null!;
    private byte[] _helloBuffer = null!;
    private byte[] _helloMeta = null!;

    [GlobalSetup]
    public void Setup()
    {
        _header = new FrameHeader(Opcode.Put, FrameFlags.Chain, 123456789, WireStatus.Ok, 10_000, 128 * ValueBytes);
        _header.Write(_headerBuffer);

        var random = new Random(3);
        var keys = new byte[BatchKeys][];
        for (int i = 0; i < BatchKeys; i++)
        {
            keys[i] = new byte[KeyLength];
            random.NextBytes(keys[i]);
        }

        _putMeta = new byte[PutRequest.PrefixSize(default, hasParent: false) + BatchKeys * PutRequest.EntrySize(KeyLength)];
        var put = new MetaWriter(_putMeta);
        PutRequest.WritePrefix(ref put, default, hasParent: false, BatchKeys);
        foreach (byte[] key in keys)
        {
            PutRequest.WriteEntry(ref put, key, ValueBytes);
        }

        var keyList = keys.Select(k => (ReadOnlyMemory<byte>)k).ToList();
        _keyBatchMeta = new byte[KeyBatchRequest.Size(keyList, 0, BatchKeys)];
        var batch = new MetaWriter(_keyBatchMeta);
        KeyBatchRequest.Write(ref batch, keyList, 0, BatchKeys);

        _getReplyMeta = new byte[GetReply.Size(BatchKeys)];
        var get = new MetaWriter(_getReplyMeta);
        GetReply.WriteCount(ref get, BatchKeys);
        for (int i = 0; i < BatchKeys; i++)
        {
            // One miss in eight, like a partly warm prefix cache.
            var entry = i % 8 == 7
                ? new GetReplyEntry(WireStatus.NotFound, 0, 0)
                : new GetReplyEntry(WireStatus.Ok, ValueBytes, (uint)i * 2654435761u);
            GetReply.WriteEntry(ref get, entry);
            _getReplyPayload += entry.Length;
        }

        byte[] nonce = new byte[ProtocolLimits.NonceBytes];
        random.NextBytes(nonce);
        _hello = new HelloReply(1, 0, true, nonce, (ulong)ProtocolLimits.DefaultMaxValueBytes, ProtocolLimits.MaxKeyBytes,
            ProtocolLimits.DefaultMaxBatchKeys, ProtocolLimits.DefaultMaxMetaBytes, 1UL << 30, "kvasir-node-01");
        _helloBuffer = new byte[_hello.Size];
        var hello = new MetaWriter(_helloBuffer);
        _hello.Write(ref hello);
        _helloMeta = _helloBuffer.ToArray();
    }

    [Benchmark(Description = "FrameHeader.Write")]
    public byte FrameHeaderWrite()
    {
        _header.Write(_headerBuffer);
        return _headerBuffer[5];
    }

    [Benchmark(Description = "FrameHeader.Read")]
    public FrameHeader FrameHeaderRead() => FrameHeader.Read(_headerBuffer);

    [Benchmark(Description = "PutBatchReader.Validate (128 keys)")]
    public int PutBatchValidate() =>
        PutBatchReader.Validate(_putMeta, FrameFlags.None, ProtocolLimits.DefaultMaxBatchKeys, BatchKeys * ValueBytes);

    [Benchmark(Description = "KeyBatchReader walk (128 keys)")]
    public int KeyBatchWalk()
    {
        var reader = new KeyBatchReader(_keyBatchMeta, ProtocolLimits.DefaultMaxBatchKeys);
        int sum = 0;
        while (reader.Next(out ReadOnlySpan<byte> key))
        {
            sum += key.Length + key[0];
        }

        return sum;
    }

    [Benchmark(Description = "GetReply.Read (128 entries)")]
    public GetReplyEntry[] GetReplyRead() => GetReply.Read(_getReplyMeta, BatchKeys, _getReplyPayload);

    [Benchmark(Description = "HelloReply.Write")]
    public int HelloReplyWrite()
    {
        var writer = new MetaWriter(_helloBuffer);
        _hello.Write(ref writer);
        return writer.Written;
    }

    [Benchmark(Description = "HelloReply.Read")]
    public HelloReply HelloReplyRead() => HelloReply.Read(_helloMeta);
}
