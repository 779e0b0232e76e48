namespace Kvasir.Storage.Internal;

/// <summary>
/// Maintains the chain forest (slot → parent) and the live-child counts the prefix-aware policy relies on.
/// Called under the store's lock.
/// </summary>
internal static class ChainLinks
{
    /// <summary>
    /// Ancestors walked when checking a relink for a cycle. A deeper chain is refused the link (the slot becomes
    /// a root), which is safe: it only weakens prefix ordering for that one slot.
    /// </summary>
    private const int MaxAncestorWalk = 1 << 16;

    /// <summary>
    /// Points <paramref name="slot"/> at <paramref name="parent"/> (null: make it a root), keeping child counts
    /// and the policy in step. A link that would close a cycle is refused and the slot becomes a root.
    /// </summary>
    public static void SetParent(Slot slot, Slot? parent, IEvictionPolicy policy)
    {
        if (parent is not null && (parent == slot || !parent.IsLive || (slot.ChildCount > 0 && IsAncestorOf(slot, parent))))
        {
            parent = null;
        }

        Slot? old = slot.Parent is { IsLive: true } live ? live : null;
        if (old == parent)
        {
            return;
        }

        Detach(slot, policy);
        if (parent is not null)
        {
            slot.Parent = parent;
            parent.ChildCount++;
            if (parent.ChildCount == 1)
            {
                policy.OnChildrenChanged(parent);
            }
        }
    }

    /// <summary>Drops the slot's link to its parent; a live parent left without children is reported to the policy.</summary>
    public static void Detach(Slot slot, IEvictionPolicy policy)
    {
        Slot? parent = slot.Parent;
        slot.Parent = null;
        if (parent is { IsLive: true })
        {
            parent.ChildCount--;
            if (parent.ChildCount == 0)
            {
                policy.OnChildrenChanged(parent);
            }
        }
    }

    /// <summary>
    /// True when <paramref name="candidate"/> is <paramref name="descendant"/> or one of its live ancestors, or when
    /// the walk is too long to tell. Only a slot with children can be anyone's ancestor, so callers skip this otherwise.
    /// </summary>
    private static bool IsAncestorOf(Slot candidate, Slot descendant)
    {
        Slot? current = descendant;
        for (int steps = 0; current is { IsLive: true }; steps++)
        {
            if (current == candidate || steps >= MaxAncestorWalk)
            {
                return true;
            }

            current = current.Parent;
        }

        return false;
    }
}
