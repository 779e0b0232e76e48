using System.Text.Json.Nodes;

namespace Kvasir.Prefix.Tests;

/// <summary>
/// The golden vector files shared with the Python tests (tests/vectors/, written by the Python generators).
/// A missing file fails the test that needs it, naming the file and its generator: it is never skipped.
/// </summary>
public static class VectorFiles
{
    public static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Directory.Build.props"))) return dir.FullName;
        }
        throw new InvalidOperationException($"no Directory.Build.props above {AppContext.BaseDirectory}");
    }

    public static string PathOf(string name) => Path.Combine(RepoRoot(), "tests", "vectors", name);

    /// <summary>The file's path; fails the test when it is absent.</summary>
    public static string Require(string name, string generator)
    {
        string path = PathOf(name);
        if (!File.Exists(path))
            Assert.Fail($"golden vector file tests/vectors/{name} is missing: it is written by {generator} " +
                "(the Python side of issue 14) and must be committed; this test does not skip without it");
        return path;
    }

    public static JsonObject Load(string name, string generator) => JsonNode.Parse(File.ReadAllText(Require(name, generator)))!.AsObject();
}
