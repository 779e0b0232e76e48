namespace Kvasir.Protocol.Transfer;

/// <summary>Fixed limits and defaults of the transfer protocol v1 (docs/transfer.md § Limits).</summary>
public static class TransferLimits
{
    /// <summary>The only protocol (and frame) version this build speaks.</summary>
    public const byte Version = 1;

    /// <summary>Bytes in every frame header.</summary>
    public const int HeaderSize = 32;

    /// <summary>Largest <c>meta_length</c>: 64 KiB of notification plus the WRITE fields.</summary>
    public const int MaxMetaBytes = 65_600;

    /// <summary>Largest notification (NOTIFY metadata, or the notification riding on a WRITE).</summary>
    public const int MaxNotificationBytes = 64 * 1024;

    /// <summary>Default slice size and <c>max_slice</c>: 1 MiB.</summary>
    public const int DefaultSliceBytes = 1 << 20;

    /// <summary>Largest <c>max_slice</c> an engine may announce: 64 MiB.</summary>
    public const int MaxSliceBytes = 64 << 20;

    /// <summary>Lanes per session: 1..256.</summary>
    public const int MaxLanes = 256;

    /// <summary>Session ids, engine ids, host ids and tokens are 16 bytes.</summary>
    public const int IdBytes = 16;

    /// <summary>HELLO nonce and each HMAC-SHA256 proof: 32 bytes.</summary>
    public const int NonceBytes = 32;
}
