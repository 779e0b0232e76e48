using System.Text;
using Kvasir.Protocol;
using Kvasir.Storage;

namespace Kvasir.Cli;

/// <summary>Parsing of the key-management options: TTLs in seconds and namespace quotas (<c>PREFIX=SIZE</c>, comma separated).</summary>
public static class KeyOptions
{
    /// <summary>Null for no value or "off"; else 1..u32 max seconds, or a one-line usage error naming the limit.</summary>
    public static TimeSpan? ParseTtl(string? value, string flag)
    {
        if (value is null || value == "off") return null;
        if (!ulong.TryParse(value, out ulong seconds) || seconds < 1 || seconds > uint.MaxValue)
            throw new UsageException($"{flag}: '{value}' is not a whole number of seconds in 1..{uint.MaxValue} (or off)");
        return TimeSpan.FromSeconds(seconds);
    }

    /// <summary>put --ttl: null when absent; 0 (never expires) or 1..u32 max seconds, else a one-line usage error.</summary>
    public static TimeSpan? ParseTtlOrZero(string? value) => value == "0" ? TimeSpan.Zero : ParseTtl(value, "--ttl");

    /// <summary>"a/=1GiB,b/=512MiB" → quotas; each prefix 1..512 bytes of UTF-8, each size positive, no prefix twice.</summary>
    public static IReadOnlyList<NamespaceQuota> ParseQuotas(string? value)
    {
        if (string.IsNullOrEmpty(value)) return [];
        var list = new List<NamespaceQuota>();
        foreach (var item in value.Split(','))
        {
            int eq = item.LastIndexOf('=');
            if (eq <= 0) throw new UsageException($"--namespace-quota: '{item}' is not PREFIX=SIZE (e.g. tenant-a/=4GiB)");
            var prefix = Encoding.UTF8.GetBytes(item[..eq]);
            if (prefix.Length > ProtocolLimits.MaxKeyBytes)
                throw new UsageException($"--namespace-quota: prefix of {prefix.Length} bytes is longer than the {ProtocolLimits.MaxKeyBytes}-byte key limit");
            long size;
            try { size = ByteSize.Parse(item[(eq + 1)..]); }
            catch (FormatException ex) { throw new UsageException($"--namespace-quota: {ex.Message}"); }
            if (size <= 0) throw new UsageException($"--namespace-quota: the budget of '{item[..eq]}' must be positive");
            if (list.Any(q => q.Prefix.AsSpan().SequenceEqual(prefix)))
                throw new UsageException($"--namespace-quota: prefix '{item[..eq]}' is given twice");
            list.Add(new NamespaceQuota(prefix, size));
        }
        return list;
    }
}
