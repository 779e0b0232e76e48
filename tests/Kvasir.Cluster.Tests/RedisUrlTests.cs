namespace Kvasir.Cluster.Tests;

/// <summary>The registry URL forms: plain, TLS with a CA file, ACL user and password, sentinels; and the one-line errors for the rest.</summary>
public sealed class RedisUrlTests
{
    [Fact]
    public void Each_form_parses_to_its_endpoints_credentials_and_master()
    {
        var plain = RedisUrl.Parse("redis://10.0.0.1:6380/2");
        Assert.Equal([("10.0.0.1", 6380)], plain.Endpoints);
        Assert.Equal(2, plain.Database);
        Assert.False(plain.Tls);
        Assert.Equal("redis://10.0.0.1:6380/2", plain.ToString());

        var acl = RedisUrl.Parse("redis://kv%40node:p%3Ass@h");
        Assert.Equal(("kv@node", "p:ss"), (acl.User, acl.Password));
        Assert.Equal(6379, acl.Port);
        Assert.Equal("redis://kv%40node@h:6379", acl.ToString());   // never the password

        var passwordOnly = RedisUrl.Parse("redis://:secret@[::1]:7000");
        Assert.Equal((null, "secret"), (passwordOnly.User, passwordOnly.Password));
        Assert.Equal(("::1", 7000), passwordOnly.Endpoints[0]);

        var sentinel = RedisUrl.Parse("redis+sentinel://s1:26380,s2,[::1]:26381/mymaster/3");
        Assert.Equal([("s1", 26380), ("s2", 26379), ("::1", 26381)], sentinel.Endpoints);
        Assert.Equal("mymaster", sentinel.SentinelMaster);
        Assert.Equal(3, sentinel.Database);
        Assert.Equal("redis+sentinel://s1:26380,s2:26379,[::1]:26381/mymaster/3", sentinel.ToString());
    }

    [Fact]
    public void A_ca_file_is_read_at_parse_time_from_the_url_or_the_option()
    {
        using var certs = TestCertificates.Create();
        var inUrl = RedisUrl.Parse($"rediss://h:6390?ca={Uri.EscapeDataString(certs.CaFile)}");
        Assert.True(inUrl.Tls);
        Assert.Equal(certs.CaFile, inUrl.CaFile);
        Assert.Equal("CN=Kvasir Test CA", Assert.Single(inUrl.CaCertificates!).Subject);
        var option = RedisUrl.Parse("rediss://h:6390", certs.CaFile);
        Assert.Equal(certs.CaFile, option.CaFile);
        var twice = Assert.Throws<FormatException>(() => RedisUrl.Parse($"rediss://h?ca={certs.CaFile}", certs.OtherCaFile));
        Assert.Contains("given twice", twice.Message);
        var notPem = Assert.Throws<FormatException>(() => RedisUrl.Parse("rediss://h", certs.NodeKeyFile));
        Assert.Contains("holds no PEM certificate", notPem.Message);
    }

    [Theory]
    [InlineData("http://h:1", "is not a redis://, rediss:// or redis+sentinel:// URL")]
    [InlineData("redis://:pw@", "has no host")]
    [InlineData("redis://h:99999", "is not HOST[:PORT]")]
    [InlineData("redis://h:1/x", "'x' is not a database number")]
    [InlineData("redis://a:1,b:2", "several hosts need redis+sentinel://")]
    [InlineData("redis+sentinel://s:26379", "name the master")]
    [InlineData("redis+sentinel://s:26379/", "name the master")]
    [InlineData("rediss+sentinel://s/m", "TLS to sentinels is not supported")]
    [InlineData("redis://h?ca=/x.pem", "a CA file applies to TLS only")]
    [InlineData("rediss://h?verify=no", "unknown parameter 'verify=no'")]
    [InlineData("rediss://h?ca=/nonexistent/ca.pem", "CA file '/nonexistent/ca.pem' cannot be read")]
    public void Bad_urls_are_refused_in_one_line_without_the_password(string url, string expected)
    {
        var ex = Assert.Throws<FormatException>(() => RedisUrl.Parse(url));
        Assert.Contains(expected, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
        var withPassword = Assert.Throws<FormatException>(() => RedisUrl.Parse(url.Replace("://", "://u:hunter2@")));
        Assert.DoesNotContain("hunter2", withPassword.Message);
    }
}
