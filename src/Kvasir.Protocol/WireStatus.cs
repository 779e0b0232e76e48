namespace Kvasir.Protocol;

/// <summary>
/// Status codes of protocol v1. Codes below 32 are per-key results (one byte each in a batch
/// reply); codes from 32 are frame-level errors carried in the reply header. Every frame-level
/// error closes the connection after the reply is sent.
/// </summary>
public enum WireStatus : ushort
{
    Ok = 0,
    /// <summary>The key is not stored (never written, removed or evicted).</summary>
    NotFound = 1,
    /// <summary>The value exceeds the node's maximum value size or its fixed block size.</summary>
    ValueTooLarge = 2,
    /// <summary>The key is empty or longer than the maximum key length (512 bytes).</summary>
    InvalidKey = 3,
    /// <summary>The node could not make room: what is left is pinned, leased or being written.</summary>
    OutOfMemory = 4,
    /// <summary>
    /// A tier the node writes through (its local disk) could not store the value or the removal: nothing changed,
    /// the key keeps what it had. The node's health report says why (I/O error, disk full).
    /// </summary>
    TierFailed = 5,
    /// <summary>PUT: storing the value would take its namespace (a key prefix with a byte budget) over its budget. Value bytes dropped.</summary>
    QuotaExceeded = 6,

    /// <summary>Malformed frame: bad magic, non-zero reserved field, unknown flag, lengths that point past the frame or disagree with each other.</summary>
    BadFrame = 32,
    /// <summary>The header version, or the HELLO version range, is not one the node speaks.</summary>
    UnsupportedVersion = 33,
    /// <summary>The opcode is not defined by the negotiated protocol version.</summary>
    UnknownOpcode = 34,
    /// <summary>The first frame on a connection must be HELLO.</summary>
    HelloRequired = 35,
    /// <summary>The node has an auth key and the connection has not passed AUTH.</summary>
    AuthRequired = 36,
    /// <summary>The client's proof did not match; nothing else is answered on this connection.</summary>
    AuthFailed = 37,
    /// <summary>The metadata section, or a single value, exceeds the node's hard frame limits.</summary>
    FrameTooLarge = 38,
    /// <summary>More keys in one request than the node's batch limit.</summary>
    BatchTooLarge = 39,
    /// <summary>A frame that is valid but not allowed in this state (second HELLO, AUTH without auth).</summary>
    BadState = 40,
    /// <summary>The node is shutting down and takes no new requests.</summary>
    ShuttingDown = 41,
    /// <summary>The node failed while serving the request (a bug or a resource failure); the connection is closed, the node keeps running.</summary>
    InternalError = 42,
    /// <summary>The connection went over one of its own limits (leases held, ...); the message names the limit. The connection is closed and everything it held released.</summary>
    LimitExceeded = 43,
}

/// <summary>Helpers over <see cref="WireStatus"/>.</summary>
public static class WireStatuses
{
    /// <summary>True when a reply with this status is followed by the node closing the connection.</summary>
    public static bool ClosesConnection(WireStatus status) => (ushort)status >= 32;

    /// <summary>True for codes that may appear as a per-key status byte.</summary>
    public static bool IsPerKey(WireStatus status) => (ushort)status < 32;
}
