namespace Kvasir.Client.Tests;

/// <summary>
/// DESIGN.md: an SDK user who only talks to a node over TCP or shared memory pulls in neither the node
/// nor ASP.NET Core. Checked on the compiled assembly, so a stray type reference fails here.
/// </summary>
public sealed class DependencyTests
{
    private static readonly string[] Forbidden = ["Kvasir.Server", "Kvasir.Storage", "Kvasir.Embedded", "Microsoft.AspNetCore"];

    [Fact]
    public void The_client_assembly_references_neither_the_node_nor_storage_nor_ASP_NET_Core()
    {
        var referenced = typeof(KvStore).Assembly.GetReferencedAssemblies().Select(a => a.Name!).ToArray();

        Assert.Contains("Kvasir.Protocol", referenced);   // control: the list is the real one
        var bad = referenced.Where(name => Forbidden.Any(f => name == f || name.StartsWith(f + ".", StringComparison.Ordinal))).ToArray();
        Assert.True(bad.Length == 0, $"Kvasir.Client references {string.Join(", ", bad)}");
    }

    [Fact]
    public void The_client_boxes_it_may_use_reference_no_ASP_NET_Core_either()
    {
        foreach (var assembly in new[] { typeof(Kvasir.Cluster.NodeRecord).Assembly, typeof(Kvasir.Net.BufferedReceiver).Assembly, typeof(Kvasir.Protocol.WireStatus).Assembly })
        {
            var bad = assembly.GetReferencedAssemblies().Select(a => a.Name!)
                .Where(name => name.StartsWith("Microsoft.AspNetCore", StringComparison.Ordinal) || name is "Kvasir.Server" or "Kvasir.Storage").ToArray();
            Assert.True(bad.Length == 0, $"{assembly.GetName().Name} references {string.Join(", ", bad)}");
        }
    }
}
