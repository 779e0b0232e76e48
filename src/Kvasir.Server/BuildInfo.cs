using System.Reflection;

namespace Kvasir.Server;

/// <summary>The node's build as /metrics (<c>kvasir_build_info</c>), /v1/status and the dashboard name it.</summary>
public static class BuildInfo
{
    /// <summary>The informational version (with the source revision when the SDK recorded it), else the assembly version.</summary>
    public static string Version { get; } =
        typeof(BuildInfo).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(BuildInfo).Assembly.GetName().Version?.ToString() ?? "unknown";
}
