using Azure.Storage;
using Azure.Storage.Blobs;
using Azure.Storage.Blobs.Specialized;
using Azure.Storage.Sas;
using LlavaMech.Testing;
using Xunit.Abstractions;

namespace LlavaMech.Storage.Tests;

/// <summary>
/// Credentials never end up in the output: no blob, property (copy source, copy id, ...), metadata or tag of a
/// committed or rolled-forward shard holds the SAS signature or the account key, whichever way the store
/// authenticates; error messages hold neither.
/// </summary>
[Collection(AzuriteCollection.Name)]
public sealed class CredentialLeakTests(AzuriteFixture azurite, ITestOutputHelper output) : IDisposable
{
    private readonly TempDir _scratch = new();

    public void Dispose() => _scratch.Dispose();

    public static TheoryData<string> Auths => new()
    {
        "account-key connection string", "account-key credential", "container SAS connection string", "account SAS connection string", "SAS URL",
    };

    /// <summary>A store over <paramref name="container"/> that authenticates as <paramref name="auth"/> says; the SAS signature it uses, if any.</summary>
    private static (BlobObjectStore Store, string? Sig) Open(string auth, BlobContainerClient container, string prefix)
    {
        var options = AzuriteFixture.Fast;
        string endpoint = container.GetParentBlobServiceClient().Uri.ToString().TrimEnd('/');
        var expires = DateTimeOffset.UtcNow.AddHours(1);
        switch (auth)
        {
            case "account-key connection string":
                return (new BlobObjectStore(
                    $"DefaultEndpointsProtocol=http;AccountName={AzuriteFixture.AccountName};AccountKey={AzuriteFixture.AccountKey};BlobEndpoint={endpoint};",
                    container.Name, prefix, options), null);
            case "account-key credential":
                return (new BlobObjectStore(new BlobContainerClient(container.Uri,
                    new StorageSharedKeyCredential(AzuriteFixture.AccountName, AzuriteFixture.AccountKey), options.ToClientOptions()), prefix, options), null);
            case "container SAS connection string":
            {
                string token = container.GenerateSasUri(BlobContainerSasPermissions.All, expires).Query.TrimStart('?');
                return (new BlobObjectStore($"BlobEndpoint={endpoint};SharedAccessSignature={token}", container.Name, prefix, options), SigOf(token));
            }
            case "account SAS connection string":
            {
                string token = container.GetParentBlobServiceClient()
                    .GenerateAccountSasUri(AccountSasPermissions.All, expires, AccountSasResourceTypes.All).Query.TrimStart('?');
                return (new BlobObjectStore($"BlobEndpoint={endpoint};SharedAccessSignature={token}", container.Name, prefix, options), SigOf(token));
            }
            case "SAS URL":
            {
                var sasUri = container.GenerateSasUri(BlobContainerSasPermissions.All, expires);
                return (new BlobObjectStore(new BlobContainerClient(sasUri, options.ToClientOptions()), prefix, options), SigOf(sasUri.Query));
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(auth), auth, null);
        }
    }

    /// <summary>The URL-decoded value of sig= in a SAS query string.</summary>
    internal static string SigOf(string query)
    {
        string sig = query.TrimStart('?').Split('&').Single(p => p.StartsWith("sig=", StringComparison.Ordinal))[4..];
        return Uri.UnescapeDataString(sig);
    }

    private ShardCommitter Committer(IObjectStore store, string? crashAt = null) => new(store, new ShardCommitterOptions { ScratchDir = _scratch.Path })
    {
        StepHook = step => step == crashAt ? throw new SimulatedCrash(step) : Task.CompletedTask,
    };

    [Theory]
    [MemberData(nameof(Auths))]
    public async Task Committed_and_rolled_forward_shards_hold_no_credential_anywhere(string auth)
    {
        var container = azurite.NewContainer();
        var (store, sig) = Open(auth, container, "out");
        Assert.Equal(auth.Contains("SAS"), sig is not null);

        // Shard 0 commits in one go; shard 1's committer dies right after its commit, and a repair publishes its parts;
        // shard 2 loses a race to a concurrent committer, whose publication finishes it.
        var c0 = await Committer(store).CommitAsync(0, Sample.Shard(0, 2));
        Assert.True(c0.Won);
        Assert.Equal(StatisticCatalog.ShardTableNames.Count, c0.PartsMoved);
        await Assert.ThrowsAsync<SimulatedCrash>(() => Committer(store, crashAt: "committed").CommitAsync(1, Sample.Shard(1, 3)));
        var (store2, _) = Open(auth, container, "out");
        var repair = await Committer(store2).RepairAsync();
        Assert.Equal(StatisticCatalog.ShardTableNames.Count, repair.PartsRolledForward);
        await Assert.ThrowsAsync<SimulatedCrash>(() => Committer(store, crashAt: "committed").CommitAsync(2, Sample.Shard(2, 1)));
        var c2 = await Committer(store2).CommitAsync(2, Sample.Shard(2, 1));
        Assert.Equal(CommitOutcome.AlreadyCommitted, c2.Outcome);
        Assert.Equal(StatisticCatalog.ShardTableNames.Count, c2.PartsMoved);

        // Exactly the committed parts are visible, each whole, and nothing is left staged.
        var manifests = await Committer(store).CommittedManifestsAsync();
        Assert.Equal([0, 1, 2], manifests.Select(m => m.Shard));
        var keys = (await store.ListAllAsync("")).ToDictionary(o => o.Key, o => o.Size);
        Assert.DoesNotContain(keys.Keys, k => k.StartsWith(ShardCommitter.StagingPrefix, StringComparison.Ordinal));
        var parts = manifests.SelectMany(m => m.Parts).ToList();
        Assert.Equal(parts.Select(p => p.Path).Concat(manifests.Select(m => ShardCommitter.ManifestKey(m.Shard))).Order(StringComparer.Ordinal),
            keys.Keys.Order(StringComparer.Ordinal));
        Assert.All(parts, p => Assert.Equal(p.Bytes, keys[p.Path]));
        string examples = _scratch.File("examples-1.parquet");
        Assert.True(await store.DownloadToFileAsync(parts.Single(p => p.Table == TableNames.Examples && p.Path.Contains("-00001-")).Path, examples));
        Assert.Equal(3L, Duck.Scalar<long>($"SELECT count(*) FROM read_parquet({Duck.Q(examples)})"));

        // No credential anywhere a reader of the container can look, and no copy record.
        string[] secrets = sig is null ? [AzuriteFixture.AccountKey] : [sig, AzuriteFixture.AccountKey];
        var found = await SecretScan.FindAsync(container, secrets);
        output.WriteLine($"{auth}: {keys.Count} blobs scanned, {found.Count} findings{string.Concat(found.Take(5).Select(f => "\n  " + f))}");
        Assert.Empty(found);
    }

    [Fact]
    public async Task The_scan_finds_the_signature_a_server_side_copy_records()
    {
        // What the committer no longer does: a copy whose source URL carries the SAS. The scan must see it.
        var container = azurite.NewContainer();
        var sasUri = container.GenerateSasUri(BlobContainerSasPermissions.All, DateTimeOffset.UtcNow.AddHours(1));
        var sas = new BlobContainerClient(sasUri);
        await sas.GetBlobClient("_staging/a.parquet").UploadAsync(BinaryData.FromString("payload"));
        var copy = await sas.GetBlobClient("t/a.parquet").StartCopyFromUriAsync(sas.GetBlobClient("_staging/a.parquet").Uri);
        await copy.WaitForCompletionAsync();

        var found = await SecretScan.FindAsync(container, [SigOf(sasUri.Query)]);
        output.WriteLine(string.Join("\n", found));
        Assert.Contains("t/a.parquet records a server-side copy (properties)", found);
        Assert.Contains(found, f => f.StartsWith("t/a.parquet (properties) holds a secret", StringComparison.Ordinal));
        Assert.DoesNotContain(found, f => f.StartsWith("_staging/", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("connection string")]
    [InlineData("SAS URL")]
    public async Task A_read_only_sas_fails_the_commit_with_a_message_without_the_signature(string form)
    {
        var container = azurite.NewContainer();
        var sasUri = container.GenerateSasUri(BlobContainerSasPermissions.Read | BlobContainerSasPermissions.List, DateTimeOffset.UtcNow.AddHours(1));
        string sig = SigOf(sasUri.Query);
        var store = form == "SAS URL"
            ? new BlobObjectStore(new BlobContainerClient(sasUri, AzuriteFixture.Fast.ToClientOptions()), "ro", AzuriteFixture.Fast)
            : new BlobObjectStore($"BlobEndpoint={container.GetParentBlobServiceClient().Uri.ToString().TrimEnd('/')};SharedAccessSignature={sasUri.Query.TrimStart('?')}",
                container.Name, "ro", AzuriteFixture.Fast);

        var e = await Assert.ThrowsAsync<StorageException>(() => Committer(store).CommitAsync(0, Sample.Shard(0, 1)));
        output.WriteLine(e.ToString());
        Assert.Contains("HTTP 403", e.Message);
        Assert.Contains(container.Uri.GetLeftPart(UriPartial.Path), e.Message);
        Assert.False(e.IsTransient);
        foreach (var text in new[] { e.ToString(), e.Endpoint, store.Location, store.ToString() })
        {
            Assert.DoesNotContain(sig, text);
            Assert.DoesNotContain(Uri.EscapeDataString(sig), text);
            Assert.DoesNotContain("sig=", text.Replace("sig=***", ""));
        }
        for (Exception? x = e; x is not null; x = x.InnerException)
            Assert.DoesNotContain(Uri.EscapeDataString(sig), x.Message);
        Assert.Empty(await new BlobObjectStore(container).ListAllAsync(""));   // nothing written, nothing left
    }

    [Fact]
    public void A_sas_signature_is_redacted_as_written_and_url_decoded()
    {
        string token = "sv=2022-11-02&sr=c&sp=r&se=2031-01-01T00:00:00Z&sig=" + Uri.EscapeDataString("Ab+cd/EF0123456789ghIJ=");
        _ = new BlobObjectStore($"BlobEndpoint=http://127.0.0.1:1/acct;SharedAccessSignature={token}", "c");
        Assert.Equal("x *** y", Redaction.Redact("x Ab+cd/EF0123456789ghIJ= y"));
        Assert.Equal("x *** y", Redaction.Redact("x " + Uri.EscapeDataString("Ab+cd/EF0123456789ghIJ=") + " y"));
    }
}
