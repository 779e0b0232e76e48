using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Kvasir.Protocol.Transfer;

/// <summary>The shared-memory extension of an advertisement: the file holding the region and where the window starts in it.</summary>
public sealed record ShmExtension(string Path, ulong FileOffset);

/// <summary>
/// The staging extension of an advertisement (flag bit 1): the connection's staging file through which a same-host
/// initiator moves a GPU window's bytes (<see cref="SlotCount"/> slots of <see cref="SlotBytes"/>). This engine
/// parses it and uses the lanes.
/// </summary>
public sealed record StagingExtension(string Path, uint SlotBytes, uint SlotCount);

/// <summary>
/// The advertisement blob (64 bytes, plus the shared-memory extension when flag bit 0 is set and the staging
/// extension when bit 1 is, in that order) that a
/// target hands to the application for the initiator (docs/transfer.md § Regions and advertisements).
/// <see cref="Parse"/> throws <see cref="FormatException"/> with the reason for a blob of the wrong
/// length, magic, version, flags or reserved field.
/// </summary>
public sealed record AdvertisementBlob(UInt128 EngineId, ulong AdvertId, UInt128 Token, ulong Size, ulong Ptr, ShmExtension? Shm = null,
    StagingExtension? Staging = null)
{
    public const int BaseSize = 64;

    /// <summary>The magic "KVXA" read as a little-endian integer.</summary>
    public const uint Magic = 0x4158564B;

    public byte[] ToBytes()
    {
        byte[] path = Shm is null ? [] : Encoding.UTF8.GetBytes(Shm.Path);
        byte[] staging = Staging is null ? [] : Encoding.UTF8.GetBytes(Staging.Path);
        if (path.Length > ushort.MaxValue || staging.Length > ushort.MaxValue) throw new ArgumentException("a shared-memory path is longer than 65,535 bytes");
        int shmEnd = BaseSize + (Shm is null ? 0 : 2 + path.Length + 8);
        var d = new byte[shmEnd + (Staging is null ? 0 : 2 + staging.Length + 8)];
        BinaryPrimitives.WriteUInt32LittleEndian(d, Magic);
        d[4] = TransferLimits.Version;
        d[5] = (byte)((Shm is null ? 0 : 1) | (Staging is null ? 0 : 2));
        Fields.Id(d, 8, EngineId);
        BinaryPrimitives.WriteUInt64LittleEndian(d.AsSpan(24), AdvertId);
        Fields.Id(d, 32, Token);
        BinaryPrimitives.WriteUInt64LittleEndian(d.AsSpan(48), Size);
        BinaryPrimitives.WriteUInt64LittleEndian(d.AsSpan(56), Ptr);
        if (Shm is not null)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(64), (ushort)path.Length);
            path.CopyTo(d, 66);
            BinaryPrimitives.WriteUInt64LittleEndian(d.AsSpan(66 + path.Length), Shm.FileOffset);
        }
        if (Staging is not null)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(shmEnd), (ushort)staging.Length);
            staging.CopyTo(d, shmEnd + 2);
            BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(shmEnd + 2 + staging.Length), Staging.SlotBytes);
            BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(shmEnd + 6 + staging.Length), Staging.SlotCount);
        }
        return d;
    }

    public static AdvertisementBlob Parse(ReadOnlySpan<byte> b)
    {
        if (b.Length < BaseSize) throw new FormatException($"advertisement blob is {b.Length} bytes, expected at least {BaseSize}");
        if (BinaryPrimitives.ReadUInt32LittleEndian(b) != Magic) throw new FormatException("advertisement blob has a bad magic (expected \"KVXA\")");
        if (b[4] != TransferLimits.Version) throw new FormatException($"advertisement blob version {b[4]} is not 1");
        if ((b[5] & ~3) != 0) throw new FormatException($"advertisement blob has unknown flag bits 0x{b[5]:x2}");
        if (BinaryPrimitives.ReadUInt16LittleEndian(b[6..]) != 0) throw new FormatException("advertisement blob reserved field is not zero");
        int at = BaseSize;
        ShmExtension? shm = null;
        StagingExtension? staging = null;
        if ((b[5] & 1) != 0)
        {
            string path = ReadPath(b, ref at, "shared-memory", 8);
            shm = new ShmExtension(path, BinaryPrimitives.ReadUInt64LittleEndian(b[at..]));
            at += 8;
        }
        if ((b[5] & 2) != 0)
        {
            string path = ReadPath(b, ref at, "staging", 8);
            staging = new StagingExtension(path, BinaryPrimitives.ReadUInt32LittleEndian(b[at..]), BinaryPrimitives.ReadUInt32LittleEndian(b[(at + 4)..]));
            if (staging.SlotBytes == 0 || staging.SlotCount == 0)
                throw new FormatException($"advertisement blob's staging extension has {staging.SlotCount} slots of {staging.SlotBytes} bytes (both must be at least 1)");
            at += 8;
        }
        if (b.Length != at) throw new FormatException($"advertisement blob is {b.Length} bytes, expected {at}");
        return new(Fields.Id(b, 8), BinaryPrimitives.ReadUInt64LittleEndian(b[24..]), Fields.Id(b, 32),
            BinaryPrimitives.ReadUInt64LittleEndian(b[48..]), BinaryPrimitives.ReadUInt64LittleEndian(b[56..]), shm, staging);
    }

    /// <summary>A bytes16 path at <paramref name="at"/> followed by <paramref name="after"/> bytes of fields; moves past the path.</summary>
    private static string ReadPath(ReadOnlySpan<byte> b, ref int at, string what, int after)
    {
        if (b.Length < at + 2) throw new FormatException($"advertisement blob is missing its {what} extension");
        int length = BinaryPrimitives.ReadUInt16LittleEndian(b[at..]);
        if (b.Length < at + 2 + length + after)
            throw new FormatException($"advertisement blob is {b.Length} bytes, its {what} extension needs at least {at + 2 + length + after}");
        string path = Encoding.UTF8.GetString(b.Slice(at + 2, length));
        at += 2 + length;
        return path;
    }
}

/// <summary>
/// The endpoint blob (40 bytes) of <c>get_metadata()</c>: where an engine listens and its engine id.
/// <see cref="Parse"/> throws <see cref="FormatException"/> with the reason.
/// </summary>
public sealed record EndpointBlob(IPAddress Address, ushort Port, UInt128 EngineId)
{
    public const int Size = 40;

    /// <summary>The magic "KVXE" read as a little-endian integer.</summary>
    public const uint Magic = 0x4558564B;

    public byte[] ToBytes()
    {
        var d = new byte[Size];
        BinaryPrimitives.WriteUInt32LittleEndian(d, Magic);
        d[4] = TransferLimits.Version;
        var address = Address.IsIPv4MappedToIPv6 ? Address.MapToIPv4() : Address;
        d[5] = address.AddressFamily == AddressFamily.InterNetworkV6 ? (byte)6 : (byte)4;
        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(6), Port);
        address.GetAddressBytes().CopyTo(d, 8);
        Fields.Id(d, 24, EngineId);
        return d;
    }

    public static EndpointBlob Parse(ReadOnlySpan<byte> b)
    {
        if (b.Length != Size) throw new FormatException($"endpoint blob is {b.Length} bytes, expected {Size}");
        if (BinaryPrimitives.ReadUInt32LittleEndian(b) != Magic) throw new FormatException("endpoint blob has a bad magic (expected \"KVXE\")");
        if (b[4] != TransferLimits.Version) throw new FormatException($"endpoint blob version {b[4]} is not 1");
        var address = b[5] switch
        {
            4 when !b.Slice(12, 12).ContainsAnyExcept((byte)0) => new IPAddress(b.Slice(8, 4)),
            4 => throw new FormatException("endpoint blob: an IPv4 address must leave bytes 12..23 zero"),
            6 => new IPAddress(b.Slice(8, 16)),
            _ => throw new FormatException($"endpoint blob address family {b[5]} is neither 4 nor 6"),
        };
        return new(address, BinaryPrimitives.ReadUInt16LittleEndian(b[6..]), Fields.Id(b, 24));
    }
}

/// <summary>
/// A layer-ready note (docs/transfer.md § Per-layer pull): the bytes of a NOTIFY telling a decoder that layer group
/// <see cref="Group"/> of request <see cref="Tag"/> is in the prefill's advertised buffer. 24 bytes: magic "KVXL",
/// version 1, 3 reserved, tag u64 (≥ 1), group u32, 4 reserved. Any other notification is not a note.
/// </summary>
public readonly record struct LayerReadyNote(ulong Tag, uint Group)
{
    public const int Size = 24;

    /// <summary>The magic "KVXL" read as a little-endian integer.</summary>
    public const uint Magic = 0x4C58564B;

    public byte[] ToBytes()
    {
        if (Tag == 0) throw new ArgumentException("a layer-ready note's tag is at least 1");
        var d = new byte[Size];
        BinaryPrimitives.WriteUInt32LittleEndian(d, Magic);
        d[4] = TransferLimits.Version;
        BinaryPrimitives.WriteUInt64LittleEndian(d.AsSpan(8), Tag);
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(16), Group);
        return d;
    }

    /// <summary>True when <paramref name="b"/> is a note (length, magic, version, reserved bytes zero, tag ≥ 1).</summary>
    public static bool TryParse(ReadOnlySpan<byte> b, out LayerReadyNote note)
    {
        note = default;
        if (b.Length != Size || BinaryPrimitives.ReadUInt32LittleEndian(b) != Magic || b[4] != TransferLimits.Version
            || b[5..8].ContainsAnyExcept((byte)0) || b[20..24].ContainsAnyExcept((byte)0))
            return false;
        note = new LayerReadyNote(BinaryPrimitives.ReadUInt64LittleEndian(b[8..]), BinaryPrimitives.ReadUInt32LittleEndian(b[16..]));
        return note.Tag != 0;
    }
}
