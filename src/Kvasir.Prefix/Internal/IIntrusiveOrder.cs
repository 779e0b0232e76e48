namespace Kvasir.Prefix.Internal;

/// <summary>
/// Marks a built-in policy whose order a <see cref="BlockTable{TValue}"/> keeps itself, in its entries' links, instead
/// of calling the policy per block: insertion order, with hits moved to the back when <see cref="MovesOnAccess"/>.
/// </summary>
internal interface IIntrusiveOrder
{
    /// <summary>True for LRU (a hit moves the block to the back), false for FIFO.</summary>
    bool MovesOnAccess { get; }
}
