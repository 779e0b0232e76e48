using Kvasir.Protocol;
using SharpFuzz;

// Coverage-guided fuzz target (AFL++ through SharpFuzz) for the node's frame and metadata readers: the input is a
// byte stream read as consecutive frames, each frame's metadata handed to the reader its opcode uses on the node
// (and the client's reply readers). A ProtocolException is the expected answer to bad input; any other exception,
// a hang or a crash is a finding. bench/fuzz-protocol.sh instruments Kvasir.Protocol.dll and runs afl-fuzz.
//   Kvasir.Fuzz.Protocol            run under afl-fuzz (input on stdin, persistent mode)
//   Kvasir.Fuzz.Protocol FILE...    run these inputs once each (to replay a finding)
if (args.Length > 0)
{
    foreach (var path in args) Target.Run(File.ReadAllBytes(path));
    Console.WriteLine($"{args.Length} inputs ran without a finding");
    return;
}
Fuzzer.OutOfProcess.Run(stream =>
{
    using var buffer = new MemoryStream();
    stream.CopyTo(buffer);
    Target.Run(buffer.ToArray());
});

internal static class Target
{
    private const int MaxBatch = 8192;

    public static void Run(byte[] input)
    {
        var rest = input.AsSpan();
        do
        {
            FrameHeader h;
            try { h = FrameHeader.Read(rest); }
            catch (ProtocolException) { return; }
            rest = rest[ProtocolLimits.HeaderSize..];
            int metaLength = (int)Math.Min((uint)h.MetaLength, (uint)rest.Length);
            var meta = rest[..metaLength];
            rest = rest[metaLength..];
            try { Parse(h, meta); }
            catch (ProtocolException) { }
        }
        while (rest.Length > 0);   // a short tail still goes to FrameHeader.Read, which must refuse it cleanly
    }

    private static void Parse(in FrameHeader h, ReadOnlySpan<byte> meta)
    {
        bool reply = h.IsReply;
        switch (h.Opcode)
        {
            case Opcode.Hello when reply: HelloReply.Read(meta); break;
            case Opcode.Hello: HelloRequest.Read(meta); break;
            case Opcode.Auth when reply: AuthReply.Read(meta); break;
            case Opcode.Auth: AuthRequest.Read(meta); break;
            case Opcode.Put when reply: StatusListReply.Read(meta, ExpectedCount(meta)); break;
            case Opcode.Put:
                {
                    PutBatchReader.Validate(meta, h.Flags, MaxBatch, (long)Math.Min(h.PayloadLength, long.MaxValue));
                    var put = new PutBatchReader(meta, h.Flags, MaxBatch);
                    while (put.Next(out _, out _)) { }
                    break;
                }
            case Opcode.Get when reply: GetReply.Read(meta, ExpectedCount(meta), (long)Math.Min(h.PayloadLength, long.MaxValue)); break;
            case Opcode.Get or Opcode.Exists or Opcode.Remove or Opcode.Pin or Opcode.Unpin or Opcode.Lease when !reply:
                {
                    var keys = new KeyBatchReader(meta, MaxBatch);
                    while (keys.Next(out _)) { }
                    break;
                }
            case Opcode.Exists or Opcode.Remove or Opcode.Pin or Opcode.Unpin or Opcode.Release or Opcode.Commit when reply:
                StatusListReply.Read(meta, ExpectedCount(meta));
                break;
            case Opcode.Stats when reply: StatsReply.Read(meta); break;
            case Opcode.ShmInfo when reply: ShmInfoReply.Read(meta); break;
            case Opcode.Lease when reply: ShmMessages.ReadLeaseReply(meta); break;
            case Opcode.Release or Opcode.Commit: ShmMessages.ReadIdList(meta, MaxBatch); break;
            case Opcode.Alloc when reply: ShmMessages.ReadAllocReply(meta); break;
            case Opcode.Alloc:
                {
                    var r = new MetaReader(meta);
                    uint count = r.U32();
                    if (count > MaxBatch) return;
                    for (uint i = 0; i < count; i++) { r.Key(); r.U64(); }
                    r.End();
                    break;
                }
            default:
                if ((ushort)h.Status >= 32) ErrorReply.Read(meta);
                break;
        }
    }

    /// <summary>Status lists and GET replies are read against the count the client expects: take it from the metadata itself.</summary>
    private static int ExpectedCount(ReadOnlySpan<byte> meta) => meta.Length >= 4 ? (int)Math.Min(BitConverter.ToUInt32(meta[..4]), MaxBatch) : 0;
}
