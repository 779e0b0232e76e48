using System.IO.MemoryMappedFiles;
using System.Security.Cryptography;
using Kvasir.Protocol;

namespace Kvasir.Client.Internal;

/// <summary>
/// A node's shared-memory arena mapped read-write into this process. Opened only after the token file
/// next to the arena matches the node's SHM_INFO token, which proves this process reached that very
/// node's arena, on the same host, with permission to read its files.
/// Every range the node names is checked with <see cref="Contains"/> before a byte is touched, so a
/// bad range is a ProtocolError, never an access violation. Copies run between <see cref="TryEnter"/>
/// and <see cref="Exit"/>, which hold a reference on the view: <see cref="Dispose"/> during a copy
/// unmaps only once it is over, and after Dispose <see cref="TryEnter"/> answers false.
/// </summary>
internal sealed unsafe class ShmMapping : IDisposable
{
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _base;
    private readonly byte[] _token;
    private int _disposed;

    private ShmMapping(string path, byte[] token, MemoryMappedFile file, MemoryMappedViewAccessor view, long length, TimeSpan leaseTimeout, byte[]? secret)
    {
        Path = path;
        _token = token;
        Secret = secret;
        LeaseTimeout = leaseTimeout;
        _file = file;
        _view = view;
        Length = length;
        byte* pointer = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        _base = pointer + view.PointerOffset;
    }

    public string Path { get; }

    /// <summary>How long the node holds a lease or reservation at least (its lease timeout, from SHM_INFO).</summary>
    public TimeSpan LeaseTimeout { get; }

    /// <summary>
    /// The arena file's secret (the 32 bytes at offset <see cref="Length"/>, past the mapping), from which this client
    /// proves to the node that it reads the arena (<see cref="ArenaProof"/>); null when the file has none (an older node).
    /// </summary>
    public byte[]? Secret { get; }

    /// <summary>Disposed: unmapped once its copies in flight are over, and no copy enters it again.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>Bytes mapped: the arena's length as the node reported it.</summary>
    public long Length { get; }

    /// <summary>Maps the arena <paramref name="info"/> names; throws <see cref="KvasirException"/> saying why it cannot.</summary>
    public static ShmMapping Open(ShmInfoReply info)
    {
        byte[] token;
        try { token = File.ReadAllBytes(info.Path + ".token"); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new KvasirException($"cannot read {info.Path}.token: {ex.Message}", ex);
        }
        if (!CryptographicOperations.FixedTimeEquals(token, info.Token))
            throw new KvasirException($"{info.Path} on this host is not the node's arena (its token differs: the node is on another host or was restarted)");
        if (info.ArenaLength == 0 || info.ArenaLength > long.MaxValue)
            throw new KvasirException($"the node reported an arena of {info.ArenaLength} bytes");
        if (info.LeaseTimeoutMs == 0)
            throw new KvasirException("the node reported a lease timeout of 0 ms");
        long length = (long)info.ArenaLength;
        FileStream stream;
        try { stream = new FileStream(info.Path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new KvasirException($"cannot open {info.Path}: {ex.Message}", ex);
        }
        MemoryMappedFile? file = null;
        try
        {
            if (stream.Length < length)
                throw new KvasirException($"{info.Path} is shorter ({stream.Length} bytes) than the arena ({length} bytes)");
            byte[]? secret = null;
            if (stream.Length >= length + ArenaProof.SecretBytes)
            {
                secret = new byte[ArenaProof.SecretBytes];
                if (RandomAccess.Read(stream.SafeFileHandle, secret, length) != secret.Length) secret = null;
            }
            file = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: false);
            var view = file.CreateViewAccessor(0, length, MemoryMappedFileAccess.ReadWrite);
            return new ShmMapping(info.Path, token, file, view, length, TimeSpan.FromMilliseconds(info.LeaseTimeoutMs), secret);
        }
        catch (Exception ex)
        {
            if (file is null) stream.Dispose();
            else file.Dispose();   // owns the stream
            if (ex is IOException or UnauthorizedAccessException)
                throw new KvasirException($"cannot map {info.Path}: {ex.Message}", ex);
            throw;
        }
    }

    /// <summary>
    /// Whether a node's SHM_INFO names this very arena (path, length and token): false for a node restarted at the
    /// same address, whose new arena has a new token.
    /// </summary>
    public bool Serves(ShmInfoReply info) =>
        info.Path == Path && info.ArenaLength == (ulong)Length && CryptographicOperations.FixedTimeEquals(info.Token, _token);

    /// <summary>True when [offset, offset + length) lies inside the mapping.</summary>
    public bool Contains(ulong offset, ulong length) => offset <= (ulong)Length && length <= (ulong)Length - offset;

    /// <summary>Keeps the mapping alive for copies; false once it is disposed. Pair with <see cref="Exit"/>.</summary>
    public bool TryEnter()
    {
        if (Volatile.Read(ref _disposed) != 0) return false;
        bool added = false;
        try { _view.SafeMemoryMappedViewHandle.DangerousAddRef(ref added); }
        catch (ObjectDisposedException) { return false; }
        return added;
    }

    public void Exit() => _view.SafeMemoryMappedViewHandle.DangerousRelease();

    /// <summary>Copies <c>destination.Length</c> bytes from arena offset <paramref name="offset"/>. The range must be checked and entered.</summary>
    public void CopyOut(ulong offset, Span<byte> destination)
        => new ReadOnlySpan<byte>(_base + offset, destination.Length).CopyTo(destination);

    /// <summary>Copies <paramref name="source"/> to arena offset <paramref name="offset"/>. The range must be checked and entered.</summary>
    public void CopyIn(ulong offset, ReadOnlySpan<byte> source)
        => source.CopyTo(new Span<byte>(_base + offset, source.Length));

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
    }
}
