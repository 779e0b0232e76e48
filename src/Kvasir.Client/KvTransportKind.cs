namespace Kvasir.Client;

/// <summary>How a <see cref="KvStore"/> moves value bytes to and from a node (<see cref="KvStoreOptions.Transport"/>, <see cref="KvStore.Transport"/>).</summary>
public enum KvTransportKind
{
    /// <summary>Shared memory when the node is on this host and its arena can be mapped, otherwise TCP (the reason is logged).</summary>
    Auto = 0,
    /// <summary>Everything over the socket.</summary>
    Tcp = 1,
    /// <summary>
    /// Control messages over the socket, value bytes copied straight between the caller's memory and
    /// the node's arena, mapped from its /dev/shm file. Only for a node on this host.
    /// </summary>
    Shm = 2,
    /// <summary>A node inside this process (<see cref="KvStore.Open"/>; Kvasir.Embedded's EmbeddedKvStore); reported, never chosen in options.</summary>
    InProcess = 3,
}
