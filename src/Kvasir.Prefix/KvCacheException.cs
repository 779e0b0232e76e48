namespace Kvasir.Prefix;

/// <summary>
/// Base of every engine-side KV error: a stable <see cref="Code"/> ("KV_" + the name, e.g. "KV_POOL_FULL"),
/// a message, a <see cref="Context"/> of the values that explain it (ids, sizes, budgets), whether a retry
/// can succeed (<see cref="Retryable"/>) and the cause. Each code has its own sealed subclass
/// (<see cref="PoolFullException"/>, ...), so callers catch exactly what they handle.
/// </summary>
public abstract class KvCacheException : Exception
{
    /// <summary>An error with <paramref name="name"/> (the code without "KV_").</summary>
    protected KvCacheException(string name, string message, IReadOnlyDictionary<string, object?>? context, bool retryable, Exception? cause)
        : base(message, cause)
    {
        Code = "KV_" + name;
        Context = context ?? new Dictionary<string, object?>();
        Retryable = retryable;
    }

    /// <summary>"KV_" + the error's name, as in Python's <c>KVCacheError.code</c>.</summary>
    public string Code { get; }

    /// <summary>The values that explain the error; never null, may be empty.</summary>
    public IReadOnlyDictionary<string, object?> Context { get; }

    /// <summary>True when the same call can succeed later (after frees, evictions, or when the node answers).</summary>
    public bool Retryable { get; }

    /// <summary>
    /// The error as Python's <c>to_dict()</c> gives it: error_type (the .NET type name without "Exception"
    /// plus "Error", e.g. "PoolFullError"), code, message, context, retryable.
    /// </summary>
    public IReadOnlyDictionary<string, object?> ToDictionary() => new Dictionary<string, object?>
    {
        ["error_type"] = ErrorType,
        ["code"] = Code,
        ["message"] = Message,
        ["context"] = Context,
        ["retryable"] = Retryable,
    };

    /// <summary>The error's type name in the Python family's style ("PoolFullError").</summary>
    public string ErrorType
    {
        get
        {
            string name = GetType().Name;
            return (name.EndsWith("Exception", StringComparison.Ordinal) ? name[..^"Exception".Length] : name) + "Error";
        }
    }
}
