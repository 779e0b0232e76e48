using System.Runtime.InteropServices;

namespace Kvasir.Net;

/// <summary>
/// Linux's <c>struct iovec</c>, <c>struct msghdr</c> and <c>sendmsg</c>, for the senders that write many segments
/// with one call (<see cref="GatherSender"/>, the transfer engine's lanes).
/// </summary>
public static unsafe partial class NativeSend
{
    public const int MSG_DONTWAIT = 0x40, MSG_NOSIGNAL = 0x4000;

    [StructLayout(LayoutKind.Sequential)]
    public struct Iovec
    {
        public nint Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct MessageHeader
    {
        public nint Name;
        public uint NameLength;
        public Iovec* Iov;
        public nuint IovLength;
        public nint Control;
        public nuint ControlLength;
        public int Flags;
    }

    [LibraryImport("libc", EntryPoint = "sendmsg", SetLastError = true)]
    public static partial nint SendMessage(nint fd, MessageHeader* message, int flags);
}
