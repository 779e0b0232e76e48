using System.Buffers.Binary;

namespace Kvasir.Protocol.Tests;

public class BatchReaderTests
{
    private static byte[] PutMeta(byte[]? parent, params (byte[] Key, long Length)[] entries)
    {
        int size = PutRequest.PrefixSize(parent ?? [], parent is not null) + entries.Sum(e => PutRequest.EntrySize(e.Key.Length));
        var meta = new byte[size];
        var w = new MetaWriter(meta);
        PutRequest.WritePrefix(ref w, parent ?? [], parent is not null, entries.Length);
        foreach (var (key, length) in entries) PutRequest.WriteEntry(ref w, key, length);
        return meta;
    }

    private static byte[] KeyMeta(params byte[][] keys)
    {
        var list = keys.Select(k => (ReadOnlyMemory<byte>)k).ToList();
        var meta = new byte[KeyBatchRequest.Size(list, 0, list.Count)];
        var w = new MetaWriter(meta);
        KeyBatchRequest.Write(ref w, list, 0, list.Count);
        return meta;
    }

    private static WireStatus StatusOf(Action action) => Assert.Throws<ProtocolException>(action).Status;

    [Fact]
    public void MetaReader_rejects_every_truncation_of_a_valid_PUT_metadata_as_BadFrame()
    {
        var meta = PutMeta("parent"u8.ToArray(), ("a"u8.ToArray(), 3), ([0, 1, 2, 3], 0), ("key-three"u8.ToArray(), 5));
        var flags = FrameFlags.Chain | FrameFlags.ChainParent;
        Assert.Equal(3, PutBatchReader.Validate(meta, flags, 8192, 8));
        for (int length = 0; length < meta.Length; length++)
        {
            var prefix = meta[..length];
            Assert.Equal(WireStatus.BadFrame, StatusOf(() => PutBatchReader.Validate(prefix, flags, 8192, 8)));
        }
    }

    [Fact]
    public void MetaReader_rejects_every_truncation_of_a_valid_HELLO_metadata_as_BadFrame()
    {
        var hello = new HelloRequest(1, 1, 0, "client");
        var meta = new byte[hello.Size];
        var w = new MetaWriter(meta);
        hello.Write(ref w);
        for (int length = 0; length < meta.Length; length++)
        {
            var prefix = meta[..length];
            Assert.Equal(WireStatus.BadFrame, StatusOf(() => HelloRequest.Read(prefix)));
        }
    }

    [Fact]
    public void MetaReader_reads_little_endian_fields_and_End_rejects_leftover_bytes()
    {
        byte[] meta = [1, 2, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0xAA, 0xBB, 9];
        Assert.Equal(WireStatus.BadFrame, StatusOf(() =>
        {
            var r = new MetaReader(meta);
            Assert.Equal(1, r.U8());
            Assert.Equal(2, r.U16());
            Assert.Equal(3u, r.U32());
            Assert.Equal(4UL, r.U64());
            Assert.Equal(new byte[] { 0xAA, 0xBB }, r.Key().ToArray());
            Assert.Equal(1, r.Remaining);
            r.End();
        }));
    }

    [Fact]
    public void MetaReader_rejects_a_negative_length_as_BadFrame()
    {
        Assert.Equal(WireStatus.BadFrame, StatusOf(() => new MetaReader(new byte[4]).Bytes(-1)));
    }

    [Fact]
    public void KeyBatchReader_returns_each_key_with_its_offset_then_stops()
    {
        var meta = KeyMeta("ab"u8.ToArray(), [], [0xFF]);
        var reader = new KeyBatchReader(meta, 3);
        Assert.Equal(3, reader.Count);
        Assert.True(reader.Next(out var k));
        Assert.Equal("ab"u8.ToArray(), k.ToArray());
        Assert.Equal(6, reader.KeyOffset);
        Assert.True(reader.Next(out k));
        Assert.True(k.IsEmpty);
        Assert.True(reader.Next(out k));
        Assert.Equal(new byte[] { 0xFF }, k.ToArray());
        Assert.False(reader.Next(out _));
    }

    [Fact]
    public void KeyBatchReader_accepts_exactly_the_batch_limit_and_rejects_one_more_as_BatchTooLarge()
    {
        var keys = Enumerable.Range(0, 5).Select(i => new[] { (byte)i }).ToArray();
        var meta = KeyMeta(keys);
        Assert.Equal(5, new KeyBatchReader(meta, 5).Count);
        Assert.Equal(WireStatus.BatchTooLarge, StatusOf(() => new KeyBatchReader(meta, 4)));
    }

    [Fact]
    public void KeyBatchReader_checks_the_batch_limit_before_the_metadata_length()
    {
        var meta = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(meta, uint.MaxValue);
        Assert.Equal(WireStatus.BatchTooLarge, StatusOf(() => new KeyBatchReader(meta, 8192)));
    }

    [Fact]
    public void KeyBatchReader_rejects_a_count_that_cannot_fit_the_metadata_as_BadFrame()
    {
        var meta = KeyMeta([1], [2]);
        BinaryPrimitives.WriteUInt32LittleEndian(meta, 4);
        Assert.Equal(WireStatus.BadFrame, StatusOf(() => new KeyBatchReader(meta, 8192)));
    }

    [Fact]
    public void KeyBatchReader_rejects_a_count_that_fits_the_minimum_but_runs_out_of_keys_as_BadFrame()
    {
        var meta = KeyMeta([1, 2, 3]);
        BinaryPrimitives.WriteUInt32LittleEndian(meta, 2);
        Assert.Equal(WireStatus.BadFrame, StatusOf(() =>
        {
            var reader = new KeyBatchReader(meta, 8192);
            while (reader.Next(out _)) { }
        }));
    }

    [Fact]
    public void KeyBatchReader_rejects_a_metadata_without_a_count_as_BadFrame()
    {
        Assert.Equal(WireStatus.BadFrame, StatusOf(() => new KeyBatchReader(new byte[3], 8192)));
    }

    [Fact]
    public void PutBatchReader_Validate_accepts_a_payload_equal_to_the_sum_of_the_value_lengths()
    {
        var meta = PutMeta(null, ("a"u8.ToArray(), 10), ("b"u8.ToArray(), 0), ("c"u8.ToArray(), 7));
        Assert.Equal(3, PutBatchReader.Validate(meta, FrameFlags.None, 8192, 17));
    }

    [Theory]
    [InlineData(16)]
    [InlineData(18)]
    [InlineData(0)]
    public void PutBatchReader_Validate_rejects_a_payload_that_differs_from_the_sum_as_BadFrame(long payload)
    {
        var meta = PutMeta(null, ("a"u8.ToArray(), 10), ("c"u8.ToArray(), 7));
        Assert.Equal(WireStatus.BadFrame, StatusOf(() => PutBatchReader.Validate(meta, FrameFlags.None, 8192, payload)));
    }

    [Fact]
    public void PutBatchReader_accepts_a_value_of_exactly_the_hard_limit()
    {
        var meta = PutMeta(null, ("a"u8.ToArray(), ProtocolLimits.HardMaxValueBytes));
        Assert.Equal(1, PutBatchReader.Validate(meta, FrameFlags.None, 8192, ProtocolLimits.HardMaxValueBytes));
    }

    [Fact]
    public void PutBatchReader_rejects_a_value_over_the_hard_limit_as_FrameTooLarge_even_when_the_sum_matches()
    {
        long huge = ProtocolLimits.HardMaxValueBytes + 1;
        var meta = PutMeta(null, ("a"u8.ToArray(), huge));
        Assert.Equal(WireStatus.FrameTooLarge, StatusOf(() => PutBatchReader.Validate(meta, FrameFlags.None, 8192, huge)));
    }

    [Fact]
    public void PutBatchReader_rejects_a_value_length_with_the_top_bit_set_as_FrameTooLarge()
    {
        var meta = PutMeta(null, ("a"u8.ToArray(), 1));
        BinaryPrimitives.WriteUInt64LittleEndian(meta.AsSpan(4 + 2), ulong.MaxValue);
        Assert.Equal(WireStatus.FrameTooLarge, StatusOf(() => PutBatchReader.Validate(meta, FrameFlags.None, 8192, -1)));
    }

    [Fact]
    public void PutBatchReader_enforces_the_batch_limit_as_BatchTooLarge()
    {
        var meta = PutMeta(null, ("a"u8.ToArray(), 1), ("b"u8.ToArray(), 1));
        Assert.Equal(WireStatus.BatchTooLarge, StatusOf(() => PutBatchReader.Validate(meta, FrameFlags.None, 1, 2)));
    }

    [Fact]
    public void PutBatchReader_reads_the_parent_only_with_the_ChainParent_flag()
    {
        var meta = PutMeta("p"u8.ToArray(), ("k"u8.ToArray(), 2));
        var reader = new PutBatchReader(meta, FrameFlags.Chain | FrameFlags.ChainParent, 8192);
        Assert.Equal("p"u8.ToArray(), reader.Parent.ToArray());
        Assert.Equal(2, reader.ParentOffset);
        Assert.True(reader.Next(out var key, out long length));
        Assert.Equal("k"u8.ToArray(), key.ToArray());
        Assert.Equal(2, length);
        Assert.Equal(2 + 1 + 4 + 2 + 8, reader.KeyOffset);
        Assert.False(reader.Next(out _, out _));

        // The same bytes read without the flag are garbage: the parent's length becomes part of the count.
        Assert.Throws<ProtocolException>(() => PutBatchReader.Validate(meta, FrameFlags.Chain, 8192, 2));
    }

    [Fact]
    public void StatusListReply_rejects_a_count_other_than_the_number_of_keys_asked()
    {
        var meta = new byte[StatusListReply.Size(2)];
        var w = new MetaWriter(meta);
        StatusListReply.Write(ref w, [WireStatus.Ok, WireStatus.NotFound]);
        Assert.Equal(new[] { WireStatus.Ok, WireStatus.NotFound }, StatusListReply.Read(meta, 2));
        Assert.Equal(WireStatus.BadFrame, StatusOf(() => StatusListReply.Read(meta, 3)));
    }

    [Fact]
    public void GetReply_rejects_a_miss_with_a_length_and_a_payload_that_differs_from_the_hits()
    {
        var meta = new byte[GetReply.Size(2)];
        var w = new MetaWriter(meta);
        GetReply.WriteCount(ref w, 2);
        GetReply.WriteEntry(ref w, new GetReplyEntry(WireStatus.Ok, 5, 123));
        GetReply.WriteEntry(ref w, new GetReplyEntry(WireStatus.NotFound, 0, 0));
        Assert.Equal(2, GetReply.Read(meta, 2, 5).Length);
        Assert.Equal(WireStatus.BadFrame, StatusOf(() => GetReply.Read(meta, 2, 6)));

        var miss = (byte[])meta.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(miss.AsSpan(4 + 13 + 1), 1);
        Assert.Equal(WireStatus.BadFrame, StatusOf(() => GetReply.Read(miss, 2, 6)));
    }

    [Fact]
    public void ErrorReply_truncates_a_long_message_to_1024_bytes_and_reads_empty_metadata_as_no_message()
    {
        var meta = ErrorReply.Encode(new string('x', 5000));
        Assert.Equal(2 + ErrorReply.MaxMessageBytes, meta.Length);
        Assert.Equal(new string('x', 1024), ErrorReply.Read(meta));
        Assert.Equal("", ErrorReply.Read([]));
    }

    [Fact]
    public void HelloRequest_refuses_to_write_a_client_name_over_256_bytes()
    {
        var hello = new HelloRequest(1, 1, 0, new string('n', 257));
        var meta = new byte[hello.Size];
        Assert.Throws<ArgumentException>(() =>
        {
            var w = new MetaWriter(meta);
            hello.Write(ref w);
        });
    }
}
