using Kvasir.Protocol;
using Kvasir.Storage;

namespace Kvasir.Server;

/// <summary>The one place storage results become wire statuses.</summary>
public static class StatusMap
{
    public static WireStatus ToWire(StoreStatus status) => status switch
    {
        StoreStatus.Ok => WireStatus.Ok,
        StoreStatus.NotFound => WireStatus.NotFound,
        StoreStatus.ValueTooLarge => WireStatus.ValueTooLarge,
        StoreStatus.InvalidKey => WireStatus.InvalidKey,
        StoreStatus.OutOfMemory => WireStatus.OutOfMemory,
        _ => throw new ArgumentOutOfRangeException(nameof(status), status, "unmapped storage status"),
    };
}
