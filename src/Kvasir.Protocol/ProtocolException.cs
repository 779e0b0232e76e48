namespace Kvasir.Protocol;

/// <summary>A frame violated protocol v1. <see cref="Status"/> is what the node answers with.</summary>
public sealed class ProtocolException(WireStatus status, string message) : Exception(message)
{
    public WireStatus Status { get; } = status;
}
