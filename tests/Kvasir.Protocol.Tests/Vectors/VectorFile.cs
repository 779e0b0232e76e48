using System.Text.Json.Nodes;

namespace Kvasir.Protocol.Tests.Vectors;

/// <summary>The committed golden vectors, tests/vectors/frames.json. Read, never regenerated.</summary>
public static class VectorFile
{
    private static readonly Lazy<JsonObject> Root = new(Load);

    public static JsonObject Document => Root.Value;

    public static JsonArray Vectors => Document["vectors"]!.AsArray();

    public static JsonArray Malformed => Document["malformed"]!.AsArray();

    public static JsonObject Vector(string name) => Find(Vectors, name);

    public static JsonObject MalformedVector(string name) => Find(Malformed, name);

    public static TheoryData<string> VectorNames() => Names(Vectors);

    public static TheoryData<string> MalformedNames() => Names(Malformed);

    public static byte[] Hex(JsonNode? node) => Convert.FromHexString((string)node!);

    /// <summary>Walks up from the test binaries to the folder holding Directory.Build.props.</summary>
    public static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Directory.Build.props")))
                return dir.FullName;
        }
        throw new InvalidOperationException($"no Directory.Build.props above {AppContext.BaseDirectory}");
    }

    private static JsonObject Load()
    {
        var path = Path.Combine(RepoRoot(), "tests", "vectors", "frames.json");
        return JsonNode.Parse(File.ReadAllText(path))!.AsObject();
    }

    private static JsonObject Find(JsonArray list, string name) =>
        list.Select(v => v!.AsObject()).Single(v => (string)v["name"]! == name);

    private static TheoryData<string> Names(JsonArray list)
    {
        var data = new TheoryData<string>();
        foreach (var v in list) data.Add((string)v!["name"]!);
        return data;
    }
}
