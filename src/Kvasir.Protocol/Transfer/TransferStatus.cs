namespace Kvasir.Protocol.Transfer;

/// <summary>
/// Status codes of the transfer protocol (docs/transfer.md § Status codes). Codes below 32 are slice
/// results (the lane stays open); codes from 32 up are frame-level (the sender of that reply closes the lane).
/// </summary>
public enum TransferStatus : ushort
{
    Ok = 0,
    NotAdvertised = 1,
    OutOfBounds = 2,
    TooLarge = 3,
    BadFrame = 32,
    UnsupportedVersion = 33,
    AuthRequired = 34,
    AuthFailed = 35,
    UnknownOpcode = 36,
    BadSession = 37,
    FrameTooLarge = 38,
}

public static class TransferStatusExtensions
{
    /// <summary>True for a frame-level status: the lane that carried it is closed.</summary>
    public static bool IsFrameLevel(this TransferStatus status) => (ushort)status >= 32;

    /// <summary>The spec's name: NOT_ADVERTISED, BAD_FRAME, or "status N" for a code this build does not know.</summary>
    public static string WireName(this TransferStatus status) => status switch
    {
        TransferStatus.Ok => "OK",
        TransferStatus.NotAdvertised => "NOT_ADVERTISED",
        TransferStatus.OutOfBounds => "OUT_OF_BOUNDS",
        TransferStatus.TooLarge => "TOO_LARGE",
        TransferStatus.BadFrame => "BAD_FRAME",
        TransferStatus.UnsupportedVersion => "UNSUPPORTED_VERSION",
        TransferStatus.AuthRequired => "AUTH_REQUIRED",
        TransferStatus.AuthFailed => "AUTH_FAILED",
        TransferStatus.UnknownOpcode => "UNKNOWN_OPCODE",
        TransferStatus.BadSession => "BAD_SESSION",
        TransferStatus.FrameTooLarge => "FRAME_TOO_LARGE",
        _ => $"status {(ushort)status}",
    };
}

/// <summary>A transfer frame or blob violated protocol v1; <see cref="Status"/> is the answer to send.</summary>
public sealed class TransferProtocolException(TransferStatus status, string message) : Exception(message)
{
    public TransferStatus Status { get; } = status;
}
