using System.Security.Cryptography;
using System.Text;

namespace Kvasir.Cluster.Tests;

/// <summary>
/// The registry's Lua scripts have one copy, python/kvasir/registry_lua/*.lua, which this assembly embeds and the Python
/// client ships as package data: what the .NET registry sends to Redis must be those files' bytes, unchanged.
/// </summary>
public sealed class RegistryScriptTests
{
    private static string ScriptFolder()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Directory.Build.props")))
                return Path.Combine(dir.FullName, "python", "kvasir", "registry_lua");
        }
        throw new InvalidOperationException($"no Directory.Build.props above {AppContext.BaseDirectory}");
    }

    private static byte[] FileBytes(string name) => File.ReadAllBytes(Path.Combine(ScriptFolder(), name + ".lua"));

    private static string Sha1Hex(byte[] bytes) => Convert.ToHexStringLower(SHA1.HashData(bytes));

    [Fact]
    public void Every_script_file_is_embedded_and_loads_as_the_files_exact_bytes()
    {
        var files = Directory.GetFiles(ScriptFolder(), "*.lua").Select(f => Path.GetFileNameWithoutExtension(f)!).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(["heartbeat", "list", "poll", "read", "unregister"], files);
        Assert.Equal(files, RegistryScripts.Names);
        foreach (var name in files)
            Assert.Equal(FileBytes(name), Encoding.UTF8.GetBytes(RegistryScripts.Load(name)));
        var missing = Assert.Throws<InvalidOperationException>(() => RegistryScripts.Load("no-such-script"));
        Assert.Contains("no-such-script.lua is not embedded", missing.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Each_script_the_registry_runs_is_its_own_file()
    {
        Assert.Equal(FileBytes("heartbeat"), Encoding.UTF8.GetBytes(RegistryScripts.Heartbeat));
        Assert.Equal(FileBytes("unregister"), Encoding.UTF8.GetBytes(RegistryScripts.Unregister));
        Assert.Equal(FileBytes("read"), Encoding.UTF8.GetBytes(RegistryScripts.Read));
        Assert.Equal(FileBytes("poll"), Encoding.UTF8.GetBytes(RegistryScripts.Poll));
        Assert.Equal(FileBytes("list"), Encoding.UTF8.GetBytes(RegistryScripts.List));
    }

    [Fact]
    public async Task A_real_redis_has_run_exactly_the_files_bytes_after_each_registry_call()
    {
        // Redis caches a script by the SHA-1 of the bytes it was sent: SCRIPT EXISTS of a file's SHA-1 is 1 only when the
        // registry sent that file unchanged (the Python tests check the same for the scripts the Python client sends).
        using var redis = RedisProcess.Start();
        await using var registry = await RedisClusterRegistry.ConnectAsync(RedisUrl.Parse(redis.Url), "scripts", TimeSpan.FromSeconds(5));
        string[] names = ["heartbeat", "list", "poll", "read", "unregister"];
        var shas = names.Select(n => Sha1Hex(FileBytes(n))).ToArray();
        Assert.Equal(string.Join(' ', names.Select(_ => "0")), await redis.CommandAsync(["SCRIPT", "EXISTS", .. shas]));

        var record = new NodeRecord { Id = "n1", Address = "127.0.0.1:7380", StartedMs = 1 };
        Assert.True(await registry.HeartbeatAsync(record, TimeSpan.FromSeconds(30)));
        Assert.Equal(["n1"], (await registry.ReadAsync()).Nodes.Select(n => n.Id));
        Assert.Equal(1, (await registry.PollAsync()).Live);
        Assert.Single(await registry.ListAllAsync());
        await registry.UnregisterAsync("n1");
        Assert.Empty((await registry.ReadAsync()).Nodes);
        Assert.Equal(string.Join(' ', names.Select(_ => "1")), await redis.CommandAsync(["SCRIPT", "EXISTS", .. shas]));
    }
}
