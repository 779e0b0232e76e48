using Microsoft.Extensions.Logging;

namespace Kvasir.Fuzz;

/// <summary>Counts what the node logs at Error or Critical (an internal error while serving is a finding) and keeps the first lines.</summary>
internal sealed class ErrorCounter : ILoggerProvider, ILogger
{
    private readonly List<string> _first = [];
    private long _errors;

    public long Errors => Interlocked.Read(ref _errors);

    public IReadOnlyList<string> First { get { lock (_first) return [.. _first]; } }

    public ILogger CreateLogger(string categoryName) => this;

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Error;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (logLevel < LogLevel.Error) return;
        Interlocked.Increment(ref _errors);
        lock (_first)
            if (_first.Count < 5) _first.Add($"{logLevel}: {formatter(state, exception)}{(exception is null ? "" : " " + exception)}");
    }

    public void Dispose()
    {
    }
}
