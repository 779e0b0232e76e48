namespace Kvasir.Storage.Internal;

/// <summary>Victim search over a <see cref="SlotHeap"/> that passes over candidates the store refuses (leased ones).</summary>
internal static class PassOver
{
    /// <summary>Candidates examined per victim search before giving up; bounds time spent under the lock.</summary>
    public const int ScanLimit = 1024;

    /// <summary>
    /// The lowest-priority slot that <paramref name="canEvict"/> accepts, or null after <see cref="ScanLimit"/> refusals.
    /// Refused slots go back into the heap with their priority and stamp (<paramref name="scratch"/> holds them meanwhile).
    /// The victim is taken out of the heap and its priority handed to <paramref name="chosen"/>.
    /// </summary>
    public static HeapSlot? Pick(SlotHeap heap, List<HeapPlace> scratch, Func<HeapSlot, bool> canEvict, Action<long> chosen)
    {
        HeapSlot? victim = null;
        for (int i = 0; i < ScanLimit && heap.TakeMin(out HeapPlace candidate); i++)
        {
            if (canEvict(candidate.Slot))
            {
                victim = candidate.Slot;
                chosen(candidate.Priority);
                break;
            }

            scratch.Add(candidate);
        }

        foreach (HeapPlace refused in scratch)
        {
            heap.Restore(refused);
        }

        scratch.Clear();
        return victim;
    }
}
