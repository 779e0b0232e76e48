using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Kvasir.TestSupport;

/// <summary>
/// PEM files for TLS tests, made fresh in a temporary directory: a CA, a node certificate it signs (for
/// 127.0.0.1 and <see cref="NodeName"/>), a client certificate it signs, and a second, unrelated CA with its
/// own client certificate (what a wrong CA looks like). Valid from a day ago for two days. Deleted on dispose.
/// </summary>
public sealed class TestCertificates : IDisposable
{
    /// <summary>The DNS name in the node's certificate besides 127.0.0.1 (not "localhost": a test can check a name override).</summary>
    public const string NodeName = "kvasir-node.test";

    private TestCertificates(string directory) => Directory = directory;

    public string Directory { get; }
    public string CaFile => Path.Combine(Directory, "ca.pem");
    public string NodeCertFile => Path.Combine(Directory, "node.pem");
    public string NodeKeyFile => Path.Combine(Directory, "node.key");
    public string ClientCertFile => Path.Combine(Directory, "client.pem");
    public string ClientKeyFile => Path.Combine(Directory, "client.key");
    public string OtherCaFile => Path.Combine(Directory, "other-ca.pem");
    public string OtherClientCertFile => Path.Combine(Directory, "other-client.pem");
    public string OtherClientKeyFile => Path.Combine(Directory, "other-client.key");

    public static TestCertificates Create()
    {
        var dir = Path.Combine(Path.GetTempPath(), "kvasir-tls-" + Guid.NewGuid().ToString("N")[..12]);
        System.IO.Directory.CreateDirectory(dir);
        var certs = new TestCertificates(dir);
        using var ca = NewCa("Kvasir Test CA");
        using var other = NewCa("Unrelated Test CA");
        Write(certs.CaFile, ca.Certificate);
        Write(certs.OtherCaFile, other.Certificate);
        WriteIssued(ca, "CN=" + NodeName, server: true, certs.NodeCertFile, certs.NodeKeyFile);
        WriteIssued(ca, "CN=kvasir-client", server: false, certs.ClientCertFile, certs.ClientKeyFile);
        WriteIssued(other, "CN=kvasir-client", server: false, certs.OtherClientCertFile, certs.OtherClientKeyFile);
        return certs;
    }

    private sealed record Ca(X509Certificate2 Certificate, ECDsa Key) : IDisposable
    {
        public void Dispose()
        {
            Certificate.Dispose();
            Key.Dispose();
        }
    }

    private static Ca NewCa(string name)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=" + name, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        return new Ca(request.CreateSelfSigned(now.AddDays(-1), now.AddDays(1)), key);
    }

    private static void WriteIssued(Ca ca, string subject, bool server, string certFile, string keyFile)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid(server ? "1.3.6.1.5.5.7.3.1" : "1.3.6.1.5.5.7.3.2")], false));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca.Certificate, true, false));
        if (server)
        {
            var names = new SubjectAlternativeNameBuilder();
            names.AddDnsName(NodeName);
            names.AddIpAddress(IPAddress.Loopback);
            request.CertificateExtensions.Add(names.Build());
        }
        var now = DateTimeOffset.UtcNow;
        using var certificate = request.Create(ca.Certificate.SubjectName, X509SignatureGenerator.CreateForECDsa(ca.Key),
            now.AddDays(-1), now.AddDays(1), RandomNumberGenerator.GetBytes(8));
        Write(certFile, certificate);
        File.WriteAllText(keyFile, key.ExportPkcs8PrivateKeyPem() + "\n");
    }

    private static void Write(string path, X509Certificate2 certificate) => File.WriteAllText(path, certificate.ExportCertificatePem() + "\n");

    public void Dispose()
    {
        try { System.IO.Directory.Delete(Directory, recursive: true); }
        catch (IOException) { }
    }
}
