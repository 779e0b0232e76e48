using Kvasir.Cli;

namespace Kvasir.Cli.Tests;

/// <summary>The client verbs' TLS flags become <see cref="Kvasir.Client.KvStoreOptions.Tls"/>; incomplete or missing files are usage errors.</summary>
public sealed class TlsOptionsTests : IDisposable
{
    private readonly TestCertificates _certs = TestCertificates.Create();

    public void Dispose() => _certs.Dispose();

    private static Kvasir.Client.KvStoreOptions Options(params string[] args)
        => ClientCommands.StoreOptions(CommandLine.Parse(["--server", "127.0.0.1:7380", .. args], ClientCommands.ConnectOptions, []), "t", 1);

    [Fact]
    public void No_tls_flag_means_plaintext_and_the_flags_fill_the_tls_options()
    {
        Assert.Null(Options().Tls);
        var tls = Options("--tls-ca", _certs.CaFile, "--tls-server-name", TestCertificates.NodeName,
            "--tls-cert", _certs.ClientCertFile, "--tls-key", _certs.ClientKeyFile).Tls!;
        Assert.Equal(_certs.CaFile, tls.CaFile);
        Assert.Equal(TestCertificates.NodeName, tls.ServerName);
        Assert.Equal(_certs.ClientCertFile, tls.CertFile);
        Assert.Equal(_certs.ClientKeyFile, tls.KeyFile);
        Assert.Null(Options("--tls-ca", "system").Tls!.CaFile);   // the system's roots
    }

    [Theory]
    [InlineData(new[] { "--tls-server-name", "n" }, "--tls-ca")]
    [InlineData(new[] { "--tls-ca", "system", "--tls-cert", "c.pem" }, "--tls-cert and --tls-key go together")]
    [InlineData(new[] { "--tls-ca", "/nonexistent/ca.pem" }, "--tls-ca: file '/nonexistent/ca.pem' does not exist")]
    public void Incomplete_tls_flags_are_usage_errors(string[] args, string expected)
    {
        var ex = Assert.Throws<UsageException>(() => Options(args));
        Assert.Contains(expected, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public async Task Serve_refuses_a_missing_certificate_or_a_lone_one_with_one_line_naming_it()
    {
        var missing = Path.Combine(_certs.Directory, "absent.pem");
        var r = await Cli.RunAsync("serve", "--port", "0", "--memory", "16MiB", "--max-value", "1MiB", "--tls-cert", missing, "--tls-key", _certs.NodeKeyFile);
        Assert.Equal(2, r.ExitCode);   // configuration: exit 2 as docs/operations.md says
        Assert.Contains(missing, r.Stderr);
        Assert.Single(r.ErrLines);
        var lone = await Cli.RunAsync("serve", "--port", "0", "--memory", "16MiB", "--max-value", "1MiB", "--tls-cert", _certs.NodeCertFile);
        Assert.Equal(2, lone.ExitCode);
        Assert.Contains("--tls-key", lone.Stderr);
    }
}
