using Kvasir.Protocol.Transfer;

namespace Kvasir.Transfer;

/// <summary>What went wrong, as a code a caller can branch on; the message says the rest in one line.</summary>
public enum TransferError
{
    /// <summary>A bad argument: a size of 0, a range outside its region, an option out of range.</summary>
    InvalidArgument,
    /// <summary>No connection, region, kv buffer or transfer with that id in this engine.</summary>
    UnknownId,
    /// <summary>An advertisement or endpoint blob of the wrong length, magic or version, or made by another engine.</summary>
    BadBlob,
    /// <summary>Connecting failed: refused, unreachable, handshake refused or timed out.</summary>
    ConnectFailed,
    /// <summary>The handshake's proof check failed, or one side has a key and the other none.</summary>
    AuthFailed,
    /// <summary>The target refused a slice: its advertisement is unknown, withdrawn or the token is wrong (NOT_ADVERTISED).</summary>
    NotAdvertised,
    /// <summary>The target refused a slice outside its window (OUT_OF_BOUNDS).</summary>
    OutOfBounds,
    /// <summary>A message larger than the receiving buffer (TOO_LARGE), or a notification over 64 KiB.</summary>
    TooLarge,
    /// <summary>The connection closed (peer died, reset, protocol error) before the transfer completed.</summary>
    ConnectionLost,
    /// <summary>The transfer or wait passed its deadline.</summary>
    Timeout,
    /// <summary>The engine was disposed.</summary>
    Disposed,
}

/// <summary>A transfer engine call failed. <see cref="Code"/> says what; <see cref="WireStatus"/> the peer's status when it answered one.</summary>
public sealed class TransferException(TransferError code, string reason, TransferStatus? wireStatus = null) : Exception(reason)
{
    public TransferError Code { get; } = code;

    /// <summary>The one-line reason (same as <see cref="Exception.Message"/>).</summary>
    public string Reason => Message;

    /// <summary>The status the peer answered, when the failure is a refused slice or handshake.</summary>
    public TransferStatus? WireStatus { get; } = wireStatus;

    internal static TransferException FromStatus(TransferStatus status, string what) => new(status switch
    {
        TransferStatus.NotAdvertised => TransferError.NotAdvertised,
        TransferStatus.OutOfBounds => TransferError.OutOfBounds,
        TransferStatus.TooLarge => TransferError.TooLarge,
        TransferStatus.AuthFailed or TransferStatus.AuthRequired => TransferError.AuthFailed,
        _ => TransferError.ConnectionLost,
    }, $"{what}: the peer answered {status.WireName()}", status);
}
