namespace Kvasir.Protocol;

/// <summary>Fixed limits of protocol v1 and the defaults of the configurable ones.</summary>
public static class ProtocolLimits
{
    /// <summary>The only protocol version this build speaks.</summary>
    public const ushort Version = 1;

    /// <summary>Bytes in every frame header.</summary>
    public const int HeaderSize = 32;

    /// <summary>Keys are 1 to 512 bytes of arbitrary binary.</summary>
    public const int MaxKeyBytes = 512;

    /// <summary>Default maximum value size: 64 MiB. Configurable per node.</summary>
    public const long DefaultMaxValueBytes = 64L << 20;

    /// <summary>Default maximum number of keys in one request: 8192. Configurable per node.</summary>
    public const int DefaultMaxBatchKeys = 8192;

    /// <summary>Default maximum metadata section: 8 MiB (enough for 8192 keys of 512 bytes). Configurable per node.</summary>
    public const int DefaultMaxMetaBytes = 8 << 20;

    /// <summary>
    /// A PUT value above the node's maximum is answered per key with ValueTooLarge and its bytes are
    /// read and discarded, so the connection stays usable; a value declared above this hard limit
    /// (1 GiB) is a FrameTooLarge and closes the connection, so nobody can make the node drain terabytes.
    /// </summary>
    public const long HardMaxValueBytes = 1L << 30;

    /// <summary>Size of the HELLO nonce and of each HMAC-SHA256 proof.</summary>
    public const int NonceBytes = 32;

    /// <summary>Longest client name or node id carried in HELLO.</summary>
    public const int MaxNameBytes = 256;

    /// <summary>Longest PING echo.</summary>
    public const int MaxPingBytes = 1024;

    /// <summary>
    /// How long a block stored with <see cref="FrameFlags.ParentFollows"/> waits for its absent parent: published later
    /// than this, the parent is not linked and the block stays a chain root.
    /// </summary>
    public static readonly TimeSpan LateParentWindow = TimeSpan.FromSeconds(30);

    /// <summary>Blocks a node keeps waiting for a late parent; past it the oldest wait is dropped (its block stays a root).</summary>
    public const int MaxLateParentWaits = 65_536;
}
