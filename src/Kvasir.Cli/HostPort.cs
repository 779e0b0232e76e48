using System.Globalization;

namespace Kvasir.Cli;

/// <summary>A <c>HOST:PORT</c> option value (<c>[::1]:PORT</c> for IPv6), or a bare <c>PORT</c> where a default host applies.</summary>
internal static class HostPort
{
    /// <summary>
    /// Splits <paramref name="value"/> of option <paramref name="option"/>; a bare port takes <paramref name="defaultHost"/>
    /// when given (otherwise the host is required). Port 0 only where <paramref name="allowPortZero"/> (a listener's
    /// "any free port"). Anything else is a usage error naming the option and the form it wants.
    /// </summary>
    public static (string Host, int Port) Parse(string value, string option, string? defaultHost = null, bool allowPortZero = false)
    {
        int colon = value.LastIndexOf(':');
        string host = colon > 0 ? value[..colon].Trim('[', ']') : defaultHost ?? "";
        string portText = colon >= 0 ? value[(colon + 1)..] : value;
        bool portOk = int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out int port) && port <= 65535 && (port > 0 || allowPortZero);
        if (host.Length == 0 || !portOk)
            throw new UsageException($"--{option}: '{value}' is not {(defaultHost is null ? "HOST:PORT" : "[HOST:]PORT")}"
                + (allowPortZero ? " (port 0: any free port)" : " (port 1..65535)"));
        return (host, port);
    }
}
