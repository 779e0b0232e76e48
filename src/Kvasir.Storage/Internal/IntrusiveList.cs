namespace Kvasir.Storage.Internal;

/// <summary>A node of an <see cref="IntrusiveList{T}"/>: the links live in the node itself.</summary>
internal interface IListNode<T>
    where T : class, IListNode<T>
{
    T? ListPrev { get; set; }

    T? ListNext { get; set; }

    bool InList { get; set; }
}

/// <summary>
/// A doubly linked list threaded through its nodes: O(1) add at either end and remove, no allocation.
/// A node belongs to at most one such list at a time. Not thread-safe: used under the store's lock.
/// </summary>
internal sealed class IntrusiveList<T>
    where T : class, IListNode<T>
{
    public T? First { get; private set; }

    public T? Last { get; private set; }

    public int Count { get; private set; }

    public void AddFirst(T node)
    {
        node.ListPrev = null;
        node.ListNext = First;
        if (First is not null)
        {
            First.ListPrev = node;
        }
        else
        {
            Last = node;
        }

        First = node;
        node.InList = true;
        Count++;
    }

    public void AddLast(T node)
    {
        node.ListNext = null;
        node.ListPrev = Last;
        if (Last is not null)
        {
            Last.ListNext = node;
        }
        else
        {
            First = node;
        }

        Last = node;
        node.InList = true;
        Count++;
    }

    /// <summary>Unlinks <paramref name="node"/>; a node not in the list is left alone.</summary>
    public void Remove(T node)
    {
        if (!node.InList)
        {
            return;
        }

        if (node.ListPrev is not null)
        {
            node.ListPrev.ListNext = node.ListNext;
        }
        else
        {
            First = node.ListNext;
        }

        if (node.ListNext is not null)
        {
            node.ListNext.ListPrev = node.ListPrev;
        }
        else
        {
            Last = node.ListPrev;
        }

        node.ListPrev = null;
        node.ListNext = null;
        node.InList = false;
        Count--;
    }
}
