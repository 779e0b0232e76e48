namespace Kvasir.Protocol.Transfer;

/// <summary>Opcodes of the transfer engine protocol v1 (docs/transfer.md § Opcodes). A reply carries its request's opcode.</summary>
public enum TransferOpcode : byte
{
    Hello = 0x01,
    Auth = 0x02,
    Write = 0x10,
    Read = 0x11,
    Notify = 0x12,
    KvReady = 0x13,

    /// <summary>A slice of a write is in the connection's staging file (only to a target that advertised one: docs/transfer.md § GPU memory on the same host).</summary>
    StagedWrite = 0x14,

    /// <summary>The target copies a slice of its window into the connection's staging file.</summary>
    StagedRead = 0x15,
}

/// <summary>Header flags: only <see cref="Reply"/> is defined; every other bit must be 0.</summary>
[Flags]
public enum TransferFlags : ushort
{
    None = 0,
    Reply = 0x8000,
}
