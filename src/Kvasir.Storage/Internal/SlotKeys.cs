using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Kvasir.Storage.Internal;

/// <summary>
/// Where a slot keeps its key's bytes. A key of up to <see cref="MaxInlineBytes"/> bytes is copied into the slot object
/// itself, in a field of the next multiple of 8 bytes (<see cref="HeapSlot{TKey}"/>, <see cref="ListSlot{TKey}"/>), so it
/// costs its length rounded up (its length byte sits in the slot's free bytes) instead of a separate <c>byte[]</c> (24 bytes of array header plus a
/// reference, and a second object to load on every lookup). A longer key keeps its own array
/// (<see cref="ArrayKeyHeapSlot"/>, <see cref="ArrayKeyListSlot"/>): the array handed in is owned by the slot from then on.
/// </summary>
internal static class SlotKeys
{
    /// <summary>Longest key held inside the slot object.</summary>
    public const int MaxInlineBytes = 64;

    /// <summary>A heap-policy slot holding <paramref name="key"/> (the array is kept, not copied, when the key is too long to inline).</summary>
    public static HeapSlot NewHeapSlot(byte[] key, ValueVersion first) => ((key.Length + 7) >> 3) switch
    {
        1 => new HeapSlot<Key8>(key, first),
        2 => new HeapSlot<Key16>(key, first),
        3 => new HeapSlot<Key24>(key, first),
        4 => new HeapSlot<Key32>(key, first),
        5 => new HeapSlot<Key40>(key, first),
        6 => new HeapSlot<Key48>(key, first),
        7 => new HeapSlot<Key56>(key, first),
        8 => new HeapSlot<Key64>(key, first),
        _ => new ArrayKeyHeapSlot(key, first),
    };

    /// <summary>A list-policy slot holding <paramref name="key"/> (the array is kept, not copied, when the key is too long to inline).</summary>
    public static ListSlot NewListSlot(byte[] key, ValueVersion first) => ((key.Length + 7) >> 3) switch
    {
        1 => new ListSlot<Key8>(key, first),
        2 => new ListSlot<Key16>(key, first),
        3 => new ListSlot<Key24>(key, first),
        4 => new ListSlot<Key32>(key, first),
        5 => new ListSlot<Key40>(key, first),
        6 => new ListSlot<Key48>(key, first),
        7 => new ListSlot<Key56>(key, first),
        8 => new ListSlot<Key64>(key, first),
        _ => new ArrayKeyListSlot(key, first),
    };

    /// <summary>Copies <paramref name="key"/> into <paramref name="store"/> and returns its length as stored beside it.</summary>
    public static byte Store<TKey>(ReadOnlySpan<byte> key, ref TKey store)
        where TKey : struct
    {
        if (key.Length < 1 || key.Length > Unsafe.SizeOf<TKey>())
        {
            throw new ArgumentException($"A key of {key.Length} bytes does not fit {Unsafe.SizeOf<TKey>()}.", nameof(key));
        }

        key.CopyTo(MemoryMarshal.CreateSpan(ref Unsafe.As<TKey, byte>(ref store), Unsafe.SizeOf<TKey>()));
        return (byte)key.Length;
    }

    /// <summary>The first <paramref name="length"/> bytes of <paramref name="store"/>.</summary>
    public static ReadOnlySpan<byte> Read<TKey>(ref TKey store, byte length)
        where TKey : struct
        => MemoryMarshal.CreateReadOnlySpan(ref Unsafe.As<TKey, byte>(ref store), length);
}

/// <summary>A heap-policy slot whose key is held inside it.</summary>
internal sealed class HeapSlot<TKey> : HeapSlot
    where TKey : struct
{
    private TKey _key;

    public HeapSlot(ReadOnlySpan<byte> key, ValueVersion first)
        : base(first)
    {
        InlineKeyLength = SlotKeys.Store(key, ref _key);
    }

    public override ReadOnlySpan<byte> Key => SlotKeys.Read(ref _key, InlineKeyLength);
}

/// <summary>A list-policy slot whose key is held inside it.</summary>
internal sealed class ListSlot<TKey> : ListSlot
    where TKey : struct
{
    private TKey _key;

    public ListSlot(ReadOnlySpan<byte> key, ValueVersion first)
        : base(first)
    {
        InlineKeyLength = SlotKeys.Store(key, ref _key);
    }

    public override ReadOnlySpan<byte> Key => SlotKeys.Read(ref _key, InlineKeyLength);
}

/// <summary>A heap-policy slot whose key, longer than <see cref="SlotKeys.MaxInlineBytes"/>, keeps its own array.</summary>
internal sealed class ArrayKeyHeapSlot(byte[] key, ValueVersion first) : HeapSlot(first)
{
    public override ReadOnlySpan<byte> Key => key;
}

/// <summary>A list-policy slot whose key, longer than <see cref="SlotKeys.MaxInlineBytes"/>, keeps its own array.</summary>
internal sealed class ArrayKeyListSlot(byte[] key, ValueVersion first) : ListSlot(first)
{
    public override ReadOnlySpan<byte> Key => key;
}

#pragma warning disable IDE0044, IDE0051, CS0169 // the one field of an inline array is its storage, never named
[InlineArray(8)]
internal struct Key8
{
    private byte _first;
}

[InlineArray(16)]
internal struct Key16
{
    private byte _first;
}

[InlineArray(24)]
internal struct Key24
{
    private byte _first;
}

[InlineArray(32)]
internal struct Key32
{
    private byte _first;
}

[InlineArray(40)]
internal struct Key40
{
    private byte _first;
}

[InlineArray(48)]
internal struct Key48
{
    private byte _first;
}

[InlineArray(56)]
internal struct Key56
{
    private byte _first;
}

[InlineArray(64)]
internal struct Key64
{
    private byte _first;
}
#pragma warning restore IDE0044, IDE0051, CS0169
