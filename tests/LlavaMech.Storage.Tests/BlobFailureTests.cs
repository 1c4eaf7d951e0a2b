using System.Diagnostics;
using System.Text;

namespace LlavaMech.Storage.Tests;

/// <summary>Blob storage that cannot be reached, credentials in messages, and output locations. Needs no Azurite.</summary>
public class BlobFailureTests(Xunit.Abstractions.ITestOutputHelper output)
{
    // Not Azurite's key: a made-up secret that must never show up anywhere.
    private static readonly string SecretKey = Convert.ToBase64String(Encoding.UTF8.GetBytes("this-is-the-secret-account-key-0123456789abcdef"));

    private static string ClosedEndpoint(out int port)
    {
        port = AzuriteFixture.FreePort();   // nothing listens there once the probe listener is closed
        return $"http://127.0.0.1:{port}/acct";
    }

    private static void AssertNoSecrets(Exception e, params string[] secrets)
    {
        for (var x = e; x is not null; x = x.InnerException)
            foreach (var s in secrets)
                Assert.DoesNotContain(s, x.Message);
        foreach (var s in secrets)
            Assert.DoesNotContain(s, e.ToString());
    }

    [Fact]
    public async Task Unreachable_endpoint_fails_after_retries_naming_the_endpoint_not_the_key()
    {
        string endpoint = ClosedEndpoint(out int port);
        string conn = $"DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={SecretKey};BlobEndpoint={endpoint};";
        var store = new BlobObjectStore(conn, "results", "run1");   // default retry options
        var sw = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<StorageException>(() => store.PutIfAbsentAsync("_commits/shard-00000.json", new byte[] { 1 }));
        sw.Stop();

        output.WriteLine($"{sw.Elapsed.TotalSeconds:F1} s: {e.Message}");
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(20), $"took {sw.Elapsed}");
        Assert.True(sw.Elapsed > TimeSpan.FromSeconds(2), $"gave up after {sw.Elapsed}: no backoff?");
        Assert.Equal(new BlobStoreOptions().MaxRetries + 1, e.Attempts);
        Assert.True(e.IsTransient);
        Assert.Contains($"127.0.0.1:{port}", e.Message);
        Assert.Contains("results/run1", e.Message);
        Assert.Equal($"http://127.0.0.1:{port}/acct/results/run1", e.Endpoint);
        Assert.Contains("unreachable", e.Message);
        AssertNoSecrets(e, SecretKey, conn);
    }

    [Fact]
    public async Task Every_operation_reports_storage_exception_and_sas_is_redacted()
    {
        string endpoint = ClosedEndpoint(out int port);
        const string sig = "SuperSecretSignature123%3D";
        string conn = $"BlobEndpoint={endpoint};SharedAccessSignature=sv=2022-11-02&ss=b&srt=sco&sp=rwdlac&se=2030-01-01T00:00:00Z&sig={sig}";
        var fast = new BlobStoreOptions { MaxRetries = 1, RetryDelay = TimeSpan.FromMilliseconds(50) };
        var store = new BlobObjectStore(conn, "results", null, fast);
        var ops = new Func<Task>[]
        {
            () => store.PutAsync("a", new byte[] { 1 }),
            () => store.GetBytesAsync("a"),
            () => store.ExistsAsync("a"),
            () => store.ListAllAsync(""),
            () => store.DeleteAsync("a"),
            () => store.MoveAsync("a", "b"),
            () => new ShardCommitter(store).CommittedShardsAsync(),
        };
        foreach (var op in ops)
        {
            var e = await Assert.ThrowsAsync<StorageException>(op);
            Assert.Contains($"127.0.0.1:{port}", e.Message);
            AssertNoSecrets(e, sig, conn);
        }
    }

    [Fact]
    public void Malformed_connection_string_is_refused_without_echoing_it()
    {
        var e = Assert.Throws<ArgumentException>(() => new BlobObjectStore($"AccountName=x;AccountKey={SecretKey};Nonsense", "c"));
        Assert.DoesNotContain(SecretKey, e.ToString());
        Assert.Contains("AccountKey", e.Message);   // names the keys present, not their values
    }

    [Theory]
    [InlineData("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc123secretvalue==;EndpointSuffix=core.windows.net", "abc123secretvalue")]
    [InlineData("https://a.blob.core.windows.net/c/x?sv=2022&sig=abc%2Fdef%3D&se=2030", "abc%2Fdef")]
    [InlineData("Authorization: Bearer eyJhbGciOi.payload.sig", "eyJhbGciOi")]
    [InlineData("Authorization: SharedKey acct:c2VjcmV0c2lnbmF0dXJl", "c2VjcmV0c2lnbmF0dXJl")]
    [InlineData("SharedAccessSignature=sv=1&sig=zzzSIGzzz;BlobEndpoint=x", "zzzSIGzzz")]
    public void Redaction_removes_credentials(string text, string secret)
    {
        string r = Redaction.Redact(text);
        Assert.DoesNotContain(secret, r);
        Assert.Contains("***", r);
    }

    [Fact]
    public void Sanitized_exception_chains_keep_types_and_drop_secrets()
    {
        var inner = new InvalidOperationException("bad AccountKey=abcdefghijkl;");
        var e = new StorageException("outer", "http://x", new AggregateException("retry failed", new Exception("first"), inner));
        var r = Assert.IsType<RedactedException>(e.InnerException);
        Assert.Equal(typeof(AggregateException).FullName, r.OriginalType);
        Assert.Equal(2, r.InnerCount);
        Assert.DoesNotContain("abcdefghijkl", e.ToString());
        Assert.Contains(typeof(InvalidOperationException).FullName!, e.ToString());
    }
}

public class OutputLocationTests
{
    [Fact]
    public void Local_paths_and_file_uris()
    {
        var l = OutputLocation.Parse("out/run1");
        Assert.Equal(OutputKind.Local, l.Kind);
        Assert.Equal(Path.GetFullPath("out/run1"), l.LocalPath);
        Assert.Equal("/data/out", OutputLocation.Parse("file:///data/out").LocalPath);
        Assert.Equal(Path.GetFullPath("out/run1"), OutputLocation.Normalize("out/run1"));
        Assert.Equal("/data/out", OutputLocation.Normalize("file:///data/out"));
        Assert.Equal(Path.Combine(Path.GetFullPath("out/run1"), "fp-1"), l.Child("fp-1"));
        Assert.Equal("/data/x", OutputLocation.Parse("/data/x").LocalPath);
    }

    [Theory]
    [InlineData("az://results", "results", "")]
    [InlineData("az://results/", "results", "")]
    [InlineData("az://results/exp/run-1/", "results", "exp/run-1")]
    [InlineData("AZ://my-container-01/a", "my-container-01", "a")]
    public void Az_uris(string text, string container, string prefix)
    {
        var l = OutputLocation.Parse(text);
        Assert.Equal((OutputKind.AzureBlob, container, prefix), (l.Kind, l.Container, l.Prefix));
        Assert.Null(l.ServiceUri);
        Assert.Equal("az://" + container + (prefix.Length > 0 ? "/" + prefix : ""), l.ToString());
        Assert.Equal(text, OutputLocation.Normalize(text));   // a blob location is recorded as written
        Assert.Equal("az://" + container + (prefix.Length > 0 ? "/" + prefix : "") + "/fp-1", l.Child("fp-1"));
    }

    [Fact]
    public void A_silo_cache_opens_one_store_per_location_and_credentials()
    {
        var env = new Dictionary<string, string?> { [OutputLocation.ConnectionVariable] = "UseDevelopmentStorage=true" };
        using var stores = new ObjectStores(v => env.GetValueOrDefault(v));
        string dir = Path.Combine(Path.GetTempPath(), "llavamech-stores-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var local = stores.Open(dir);
            Assert.Same(local, stores.Open(dir + "/"));
            Assert.Same(local, stores.Open("file://" + dir));
            var blob = stores.Open("az://results/a");
            Assert.Same(blob, stores.Open("az://results/a/"));
            Assert.NotSame(blob, stores.Open("az://results/b"));
            env[OutputLocation.ConnectionVariable] = "UseDevelopmentStorage=true;";   // other credentials: another store
            Assert.NotSame(blob, stores.Open("az://results/a"));
            Assert.Equal(4, stores.Count);
        }
        finally
        {
            stores.Dispose();
            Directory.Delete(dir, recursive: true);
        }
        Assert.Throws<ObjectDisposedException>(() => stores.Open(dir));
    }

    [Fact]
    public void Https_urls_name_the_endpoint()
    {
        var l = OutputLocation.Parse("https://acct.blob.core.windows.net/results/exp1");
        Assert.Equal(("results", "exp1", "https://acct.blob.core.windows.net/"), (l.Container, l.Prefix, l.ServiceUri!.ToString()));
        var emu = OutputLocation.Parse("http://127.0.0.1:10000/devstoreaccount1/results/a/b");
        Assert.Equal(("results", "a/b", "http://127.0.0.1:10000/devstoreaccount1/"), (emu.Container, emu.Prefix, emu.ServiceUri!.ToString()));
    }

    [Theory]
    [InlineData("az://")]
    [InlineData("az://UpperCase/x")]
    [InlineData("az://ab/x")]
    [InlineData("az://bad--name/x")]
    [InlineData("az://results/../x")]
    [InlineData("s3://bucket/x")]
    [InlineData("https://acct.blob.core.windows.net/results?sv=1&sig=secretsig")]
    [InlineData("")]
    public void Invalid_locations_are_refused(string text)
    {
        var e = Assert.Throws<ArgumentException>(() => OutputLocation.Parse(text));
        Assert.DoesNotContain("secretsig", e.Message);
    }

    [Fact]
    public void Credentials_come_from_the_environment()
    {
        var l = OutputLocation.Parse("az://results/exp");
        var none = Assert.Throws<ArgumentException>(() => l.OpenStore(_ => null));
        Assert.Contains(OutputLocation.ConnectionVariable, none.Message);
        Assert.Contains(OutputLocation.AccountVariable, none.Message);

        var conn = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5a2V5a2V5a2V5;BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;";
        var viaConn = l.OpenStore(v => v == OutputLocation.ConnectionVariable ? conn : null);
        Assert.Equal("http://127.0.0.1:1/devstoreaccount1/results/exp", viaConn.Location);
        var viaStandard = l.OpenStore(v => v == OutputLocation.StandardConnectionVariable ? conn : null);
        Assert.Equal(viaConn.Location, viaStandard.Location);

        var viaIdentity = l.OpenStore(v => v == OutputLocation.AccountVariable ? "myacct" : null);
        Assert.Equal("https://myacct.blob.core.windows.net/results/exp", viaIdentity.Location);
        Assert.Throws<ArgumentException>(() => l.OpenStore(v => v == OutputLocation.AccountVariable ? "Not_An_Account" : null));

        var https = OutputLocation.Parse("https://other.blob.core.windows.net/results");
        Assert.Equal("https://other.blob.core.windows.net/results", https.OpenStore(_ => null).Location);

        using var dir = new TempDir();
        var local = OutputLocation.Parse(dir.File("o")).OpenStore();
        Assert.IsType<LocalObjectStore>(local);
        Assert.True(Directory.Exists(dir.File("o")));
    }
}
