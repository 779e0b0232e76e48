using System.Reflection;
using System.Runtime.InteropServices;

namespace Kvasir.Cli;

/// <summary>The one line <c>kvasir --version</c> prints: the product version (with the source revision the build
/// came from, when the SDK recorded it), the runtime, the platform and the CRC-32C path this build takes.</summary>
internal static class VersionInfo
{
    public static string Version =>
        typeof(VersionInfo).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(VersionInfo).Assembly.GetName().Version?.ToString() ?? "unknown";

    public static string Line => $"kvasir {Version} ({RuntimeInformation.FrameworkDescription}, {RuntimeInformation.RuntimeIdentifier}; crc32c {Kvasir.Protocol.Crc32C.Implementation})";
}
