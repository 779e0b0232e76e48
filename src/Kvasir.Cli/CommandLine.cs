namespace Kvasir.Cli;

/// <summary>A usage error: printed as one line, exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>
/// A small command-line parser: <c>--name value</c>, <c>--name=value</c>, <c>--flag</c> and
/// positional arguments. Every verb declares its options; anything else is a usage error.
/// </summary>
public sealed class CommandLine
{
    private readonly Dictionary<string, string?> _values = new(StringComparer.Ordinal);

    private CommandLine(List<string> positionals) => Positionals = positionals;

    public IReadOnlyList<string> Positionals { get; }

    /// <summary>Parses <paramref name="args"/> against the verb's option names (value options and flags).</summary>
    /// <remarks>An option in <paramref name="repeatable"/> may be given more than once: its values are joined with commas.</remarks>
    public static CommandLine Parse(IReadOnlyList<string> args, IReadOnlyCollection<string> valueOptions, IReadOnlyCollection<string> flags,
        IReadOnlyCollection<string>? repeatable = null)
    {
        var positionals = new List<string>();
        var line = new CommandLine(positionals);
        bool onlyPositionals = false;
        for (int i = 0; i < args.Count; i++)
        {
            var a = args[i];
            if (onlyPositionals || !a.StartsWith("--", StringComparison.Ordinal) || a == "-")
            {
                positionals.Add(a);
                continue;
            }
            if (a == "--") { onlyPositionals = true; continue; }
            string name = a[2..], value;
            int eq = name.IndexOf('=');
            if (eq >= 0) { value = name[(eq + 1)..]; name = name[..eq]; }
            else if (flags.Contains(name)) { line._values[name] = null; continue; }
            else if (valueOptions.Contains(name))
            {
                if (i + 1 >= args.Count) throw new UsageException($"option --{name} needs a value");
                value = args[++i];
            }
            else throw new UsageException($"unknown option --{name}");
            if (!valueOptions.Contains(name))
                throw new UsageException(flags.Contains(name) ? $"option --{name} takes no value" : $"unknown option --{name}");
            if (repeatable?.Contains(name) == true && line._values.TryGetValue(name, out var earlier)) value = earlier + "," + value;
            line._values[name] = value;
        }
        return line;
    }

    public bool Has(string name) => _values.ContainsKey(name);

    public string? Get(string name) => _values.TryGetValue(name, out var v) ? v : null;

    public string Get(string name, string fallback) => Get(name) ?? fallback;

    public long Size(string name, long fallback)
    {
        var v = Get(name);
        if (v is null) return fallback;
        try { return ByteSize.Parse(v); }
        catch (FormatException ex) { throw new UsageException($"--{name}: {ex.Message}"); }
    }

    public int Int(string name, int fallback, int min = int.MinValue, int max = int.MaxValue)
    {
        var v = Get(name);
        if (v is null) return fallback;
        if (!int.TryParse(v, out int n) || n < min || n > max)
            throw new UsageException($"--{name}: '{v}' is not a whole number in {min}..{max}");
        return n;
    }

    public double Double(string name, double fallback)
    {
        var v = Get(name);
        if (v is null) return fallback;
        if (!double.TryParse(v, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double d))
            throw new UsageException($"--{name}: '{v}' is not a number");
        return d;
    }
}
