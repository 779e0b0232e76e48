namespace Kvasir.Storage.Internal;

/// <summary>Victim search over a <see cref="SlotHeap"/> that passes over candidates the store refuses (leased ones).</summary>
internal static class PassOver
{
    /// <summary>Candidates examined per victim search before giving up; bounds time spent under the lock.</summary>
    public const int ScanLimit = 1024;

    /// <summary>
    /// The lowest-priority slot that <paramref name="canEvict"/> accepts, or null after <see cref="ScanLimit"/> refusals.
    /// Refused slots keep their priority and go back into the heap. The victim is taken out of the heap and handed to
    /// <paramref name="chosen"/> first.
    /// </summary>
    public static HeapSlot? Pick(SlotHeap heap, List<HeapSlot> scratch, Func<HeapSlot, bool> canEvict, Action<HeapSlot> chosen)
    {
        HeapSlot? victim = null;
        for (int i = 0; i < ScanLimit && heap.Min is HeapSlot candidate; i++)
        {
            heap.Remove(candidate);
            if (canEvict(candidate))
            {
                victim = candidate;
                chosen(candidate);
                break;
            }

            scratch.Add(candidate);
        }

        foreach (HeapSlot refused in scratch)
        {
            heap.AddOrUpdate(refused);
        }

        scratch.Clear();
        return victim;
    }
}
