using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Kvasir.TestSupport;

/// <summary>Collects formatted log lines.</summary>
public sealed class ListLoggerFactory : ILoggerFactory, ILogger
{
    private readonly ConcurrentQueue<string> _messages = new();

    public IReadOnlyList<string> Messages => [.. _messages];

    public ILogger CreateLogger(string categoryName) => this;

    public void AddProvider(ILoggerProvider provider) { }

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        => _messages.Enqueue($"{logLevel}: {formatter(state, exception)}");

    public void Dispose() { }
}
