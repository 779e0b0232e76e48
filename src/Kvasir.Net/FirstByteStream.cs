namespace Kvasir.Net;

/// <summary>Passes everything through to the inner stream and remembers the first byte read, so a failed TLS handshake can tell a plaintext peer from a TLS one.</summary>
internal sealed class FirstByteStream(Stream inner) : Stream
{
    public byte? First { get; private set; }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count) => Note(buffer.AsSpan(offset), inner.Read(buffer, offset, count));

    public override int Read(Span<byte> buffer) => Note(buffer, inner.Read(buffer));

    /// <summary>Once the first byte is known, reads go straight to the inner stream (no extra state machine per TLS record).</summary>
    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        => First is null ? NoteAsync(buffer, cancellationToken) : inner.ReadAsync(buffer, cancellationToken);

    private async ValueTask<int> NoteAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        int count = await inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
        return Note(buffer.Span, count);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);

    public override void Write(ReadOnlySpan<byte> buffer) => inner.Write(buffer);

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => inner.WriteAsync(buffer, cancellationToken);

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => inner.WriteAsync(buffer, offset, count, cancellationToken);

    public override void Flush() => inner.Flush();

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing) inner.Dispose();
        base.Dispose(disposing);
    }

    private int Note(ReadOnlySpan<byte> read, int count)
    {
        if (First is null && count > 0) First = read[0];
        return count;
    }
}
