using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Kvasir.Cluster.Tests;

/// <summary>A throwaway CA and a server certificate it signs (for 127.0.0.1 and localhost), as PEM files in a temporary directory deleted on dispose.</summary>
public sealed class TestCertificates : IDisposable
{
    public sealed record Files(string Ca, string Cert, string Key);

    private readonly string _dir = Directory.CreateTempSubdirectory("kvasir-tls-").FullName;

    /// <summary>The CA's certificate, the server's certificate and the server's private key.</summary>
    public Files Server { get; }

    /// <summary>Another CA's certificate, which signed nothing the server sends.</summary>
    public string OtherCa { get; }

    public TestCertificates()
    {
        using var ca = NewCa("Kvasir test CA");
        using var other = NewCa("Kvasir other CA");
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=kvasir-test-redis", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        names.AddDnsName("localhost");
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        var now = DateTimeOffset.UtcNow;
        using var cert = request.Create(ca, now.AddMinutes(-5), now.AddDays(1), RandomNumberGenerator.GetBytes(8));
        Server = new Files(Write("ca.pem", ca.ExportCertificatePem()), Write("server.pem", cert.ExportCertificatePem()), Write("server.key", key.ExportPkcs8PrivateKeyPem()));
        OtherCa = Write("other-ca.pem", other.ExportCertificatePem());
    }

    private static X509Certificate2 NewCa(string name)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        var now = DateTimeOffset.UtcNow;
        return request.CreateSelfSigned(now.AddMinutes(-10), now.AddDays(2));
    }

    private string Write(string name, string pem)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, pem);
        return path;
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
