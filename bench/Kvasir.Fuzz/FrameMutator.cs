using System.Buffers.Binary;
using System.Text.Json;

namespace Kvasir.Fuzz;

/// <summary>
/// The seed corpus (every request frame and every malformed frame of tests/vectors/frames.json) and the mutations
/// applied to it: bit flips, interesting bytes, header length fields set to boundaries, truncation, splices of two
/// frames, inserted and deleted runs, and sequences of several frames in one send.
/// </summary>
internal sealed class FrameMutator
{
    private static readonly ulong[] InterestingLengths = [0, 1, 2, 7, 8, 31, 32, 33, 255, 256, 511, 512, 513, 4095, 4096, 65535, 65536,
        (1 << 20) - 1, 1 << 20, (8 << 20) - 1, 8 << 20, (8 << 20) + 1, int.MaxValue, (ulong)int.MaxValue + 1, uint.MaxValue, long.MaxValue, ulong.MaxValue];

    private static readonly byte[] InterestingBytes = [0x00, 0x01, 0x02, 0x7f, 0x80, 0xfe, 0xff, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x20, 0x30, 0x31, 0x32, 0x33, 0x34];

    private readonly List<byte[]> _requests = [];
    private readonly List<byte[]> _malformed = [];
    private readonly Random _rng;

    public FrameMutator(string vectorsPath, Random rng)
    {
        _rng = rng;
        using var doc = JsonDocument.Parse(File.ReadAllBytes(vectorsPath));
        foreach (var v in doc.RootElement.GetProperty("vectors").EnumerateArray())
        {
            var flags = v.GetProperty("frame").GetProperty("flags").EnumerateArray().Select(f => f.GetString()).ToList();
            if (!flags.Contains("REPLY")) _requests.Add(Convert.FromHexString(v.GetProperty("hex").GetString()!));
            if (v.GetProperty("name").GetString() == "hello_request_range_and_features") HelloAllFeatures = _requests[^1];
        }
        foreach (var v in doc.RootElement.GetProperty("malformed").EnumerateArray())
            _malformed.Add(Convert.FromHexString(v.GetProperty("hex").GetString()!));
        if (_requests.Count == 0) throw new InvalidDataException($"{vectorsPath} has no request vectors");
        Hello = _requests.First(f => f[5] == 0x01);
        // The HELLO asking for every feature bit (hello_request_range_and_features): a connection opened with it is
        // granted every feature the node has, so the frames that only such a connection may send (VALUE_CRC,
        // CRC_TRAILER, versions, PARENT_FOLLOWS) reach their handlers instead of being refused at the header.
        if (HelloAllFeatures.Length == 0) throw new InvalidDataException($"{vectorsPath} has no hello_request_range_and_features vector");
    }

    /// <summary>A valid HELLO request asking for no features: most fuzz connections start with it or <see cref="HelloAllFeatures"/>.</summary>
    public byte[] Hello { get; }

    /// <summary>A valid HELLO request asking for every feature.</summary>
    public byte[] HelloAllFeatures { get; } = [];

    public int CorpusSize => _requests.Count + _malformed.Count;

    /// <summary>One frame to send: a corpus frame, mutated 0 to 4 times (unmutated 20% of the time).</summary>
    public byte[] Next()
    {
        var pick = _rng.Next(5) == 0 && _malformed.Count > 0 ? _malformed[_rng.Next(_malformed.Count)] : _requests[_rng.Next(_requests.Count)];
        var frame = (byte[])pick.Clone();
        if (_rng.Next(5) == 0) return frame;
        int mutations = 1 + _rng.Next(4);
        for (int i = 0; i < mutations; i++) frame = Mutate(frame);
        return frame;
    }

    private byte[] Mutate(byte[] f)
    {
        switch (_rng.Next(9))
        {
            case 0 when f.Length > 0:   // flip one bit
                f[_rng.Next(f.Length)] ^= (byte)(1 << _rng.Next(8));
                return f;
            case 1 when f.Length > 0:   // an interesting byte anywhere
                f[_rng.Next(f.Length)] = InterestingBytes[_rng.Next(InterestingBytes.Length)];
                return f;
            case 2 when f.Length >= 32:   // meta_length to a boundary
                BinaryPrimitives.WriteUInt32LittleEndian(f.AsSpan(20), (uint)InterestingLengths[_rng.Next(InterestingLengths.Length)]);
                return f;
            case 3 when f.Length >= 32:   // payload_length to a boundary
                BinaryPrimitives.WriteUInt64LittleEndian(f.AsSpan(24), InterestingLengths[_rng.Next(InterestingLengths.Length)]);
                return f;
            case 4 when f.Length > 1:   // truncate
                return f[.._rng.Next(1, f.Length)];
            case 5:   // splice: the head of this frame, the tail of another
                {
                    var other = _requests[_rng.Next(_requests.Count)];
                    int cut = _rng.Next(f.Length + 1), from = _rng.Next(other.Length + 1);
                    return [.. f.AsSpan(0, cut), .. other.AsSpan(from)];
                }
            case 6:   // insert a run of random or repeated bytes
                {
                    var run = new byte[1 + _rng.Next(64)];
                    if (_rng.Next(2) == 0) _rng.NextBytes(run); else Array.Fill(run, InterestingBytes[_rng.Next(InterestingBytes.Length)]);
                    int at = _rng.Next(f.Length + 1);
                    return [.. f.AsSpan(0, at), .. run, .. f.AsSpan(at)];
                }
            case 7 when f.Length > 1:   // delete a run
                {
                    int at = _rng.Next(f.Length), n = 1 + _rng.Next(Math.Min(64, f.Length - at));
                    return [.. f.AsSpan(0, at), .. f.AsSpan(at + n)];
                }
            case 8 when f.Length >= 16:   // a u16/u32 inside the metadata to a boundary (counts and key lengths live there)
                {
                    int at = _rng.Next(f.Length - 4);
                    if (_rng.Next(2) == 0) BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(at), (ushort)InterestingLengths[_rng.Next(InterestingLengths.Length)]);
                    else BinaryPrimitives.WriteUInt32LittleEndian(f.AsSpan(at), (uint)InterestingLengths[_rng.Next(InterestingLengths.Length)]);
                    return f;
                }
            default:
                return f;
        }
    }
}
