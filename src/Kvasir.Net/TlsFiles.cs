using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Kvasir.Net;

/// <summary>PEM loading shared by the node's and the clients' TLS settings; every failure names the file and the reason.</summary>
internal static class TlsFiles
{
    /// <summary>A certificate with its private key (the first certificate of <paramref name="certFile"/>) and any further certificates there (the chain to send).</summary>
    public static (X509Certificate2 Leaf, X509Certificate2Collection Chain) LoadIdentity(string certFile, string keyFile, string what)
    {
        RequireFile(certFile, what + " certificate");
        RequireFile(keyFile, what + " key");
        X509Certificate2 leaf;
        try { leaf = X509Certificate2.CreateFromPemFile(certFile, keyFile); }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException) { throw new TlsConfigurationException($"{what} certificate {certFile} with key {keyFile}: {ex.Message}", ex); }
        var all = LoadCertificates(certFile, what + " certificate");
        var chain = new X509Certificate2Collection();
        foreach (var c in all)
            if (c.Thumbprint != leaf.Thumbprint) chain.Add(c);
        return (leaf, chain);
    }

    /// <summary>Every certificate in a PEM file; at least one.</summary>
    public static X509Certificate2Collection LoadCertificates(string file, string what)
    {
        RequireFile(file, what);
        var certificates = new X509Certificate2Collection();
        try { certificates.ImportFromPemFile(file); }
        catch (CryptographicException ex) { throw new TlsConfigurationException($"{what} {file}: {ex.Message}", ex); }
        if (certificates.Count == 0) throw new TlsConfigurationException($"{what} {file}: no PEM certificate in it");
        return certificates;
    }

    /// <summary>A chain policy that trusts only <paramref name="roots"/> (no revocation lookups: nodes and clients may have no network beyond each other).</summary>
    public static X509ChainPolicy CustomTrust(X509Certificate2Collection roots)
    {
        var policy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
        policy.CustomTrustStore.AddRange(roots);
        return policy;
    }

    /// <summary>What a failed chain says, one line (e.g. "unable to get local issuer certificate").</summary>
    public static string ChainProblems(X509Chain? chain)
    {
        var status = chain?.ChainStatus.Select(s => s.StatusInformation.Trim()).Where(s => s.Length > 0).Distinct().ToList() ?? [];
        return status.Count == 0 ? "no detail" : string.Join("; ", status);
    }

    private static void RequireFile(string file, string what)
    {
        if (!File.Exists(file)) throw new TlsConfigurationException($"{what} file {file} does not exist");
    }
}

/// <summary>A TLS option names a file that is missing or is not a usable PEM certificate or key.</summary>
public sealed class TlsConfigurationException(string message, Exception? inner = null) : Exception(message, inner);
