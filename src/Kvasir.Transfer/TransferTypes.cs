using System.Net;

namespace Kvasir.Transfer;

/// <summary>A notification received from a peer: on its own (NOTIFY) or riding on a write, delivered once all of it landed.</summary>
public readonly record struct TransferNotification(int ConnId, byte[] Bytes);

/// <summary>A connection a peer opened to this engine: the peer's address (of its first lane) and the connection id here.</summary>
public readonly record struct AcceptedConnection(IPAddress Address, int Port, int ConnId);

/// <summary>
/// One piece of a vector write or read: <see cref="Length"/> bytes at <see cref="Offset"/> of local region
/// <see cref="RegionId"/>, to or from the start of the window that <see cref="Advertisement"/> describes.
/// <see cref="Notification"/> (writes only) is delivered to the target when the piece has landed.
/// </summary>
public readonly record struct TransferItem(int RegionId, long Offset, long Length, ReadOnlyMemory<byte> Advertisement, ReadOnlyMemory<byte> Notification = default);
