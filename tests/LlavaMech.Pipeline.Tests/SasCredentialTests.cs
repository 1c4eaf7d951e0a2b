using System.Text.RegularExpressions;
using Azure.Storage.Blobs;
using Azure.Storage.Sas;
using DuckDB.NET.Data;
using LlavaMech.Storage;
using LlavaMech.Testing;
using Xunit.Abstractions;
using static LlavaMech.Storage.DuckDbSql;

namespace LlavaMech.Pipeline.Tests;

/// <summary>
/// The CLI writing to Azure Blob Storage with a SAS connection string: the signature and the account key appear
/// neither in what it prints (standard output and error, logs included) nor anywhere in the output container (blob
/// contents, properties such as the copy source, metadata, tags), whether the run succeeds or fails.
/// </summary>
[Collection(PipelineCollection.Name)]
public class SasCredentialTests(AzuriteFixture azurite, ITestOutputHelper output)
{
    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(5);

    /// <summary>A SAS connection string for the blob endpoint of Azurite, and the signature it holds (URL-decoded).</summary>
    private (string Connection, string Sig) Sas(AccountSasPermissions permissions)
    {
        var service = new BlobServiceClient(azurite.ConnectionString);
        string token = service.GenerateAccountSasUri(permissions, DateTimeOffset.UtcNow.AddHours(1), AccountSasResourceTypes.All).Query.TrimStart('?');
        string sig = Uri.UnescapeDataString(token.Split('&').Single(p => p.StartsWith("sig=", StringComparison.Ordinal))[4..]);
        return ($"BlobEndpoint={service.Uri.ToString().TrimEnd('/')};SharedAccessSignature={token}", sig);
    }

    private static void AssertNoSecretPrinted(string printed, params string[] secrets)
    {
        foreach (var s in secrets)
        {
            Assert.DoesNotContain(s, printed);
            Assert.DoesNotContain(Uri.EscapeDataString(s), printed);
        }
        Assert.DoesNotMatch(new Regex(@"sig=(?!\*\*\*)", RegexOptions.IgnoreCase), printed);
        Assert.DoesNotContain("SharedAccessSignature=s", printed);
    }

    [Fact]
    public async Task Run_with_a_sas_connection_string_prints_and_stores_no_credential()
    {
        using var tmp = new TempDir();
        var data = TestData.Build(tmp.Sub("data"), perTask: 2, copies: 1);   // 4 examples (+ bad lines, + one the worker rejects)
        var (connection, sig) = Sas(AccountSasPermissions.All);
        string container = "sas" + Guid.NewGuid().ToString("N")[..12];   // created by the run
        string location = $"az://{container}/runs/sas";

        var run = await ChildProcess.RunAsync("run",
        [
            "run", "--model", TestData.TinyModel, "--dataset", data.ManifestPath, "--out", location, "--shard-size", "2",
            "--torch-threads", "1", "--verbose",
        ], new Dictionary<string, string> { [OutputLocation.ConnectionVariable] = connection }, Limit);
        output.WriteLine(run.Output);
        Assert.True(run.Code == 0, $"exit {run.Code}");
        Assert.Contains($"-> {location}", run.Output);
        Assert.Contains("examples      4 (tqa 2, vqa 2)", run.Stdout);
        AssertNoSecretPrinted(run.Output, sig, AzuriteFixture.AccountKey);

        var direct = new BlobContainerClient(azurite.ConnectionString, container);
        var committer = new ShardCommitter(new BlobObjectStore(direct, "runs/sas"));
        var manifests = await committer.CommittedManifestsAsync();
        Assert.Equal(3, manifests.Count);   // 5 examples read (one rejected by the worker), 2 per shard
        var blobs = new List<string>();
        await foreach (var b in direct.GetBlobsAsync()) blobs.Add(b.Name);
        Assert.All(manifests.SelectMany(m => m.Parts), p => Assert.Contains("runs/sas/" + p.Path, blobs));
        Assert.DoesNotContain(blobs, b => b.Contains("/" + ShardCommitter.StagingPrefix, StringComparison.Ordinal));
        Assert.Contains(blobs, b => b.StartsWith("runs/sas/" + TableNames.HeadSummary + "/", StringComparison.Ordinal));
        string dir = tmp.Sub("examples");
        Directory.CreateDirectory(dir);
        foreach (var b in blobs.Where(b => b.StartsWith("runs/sas/" + TableNames.Examples + "/", StringComparison.Ordinal)))
            await direct.GetBlobClient(b).DownloadToAsync(Path.Combine(dir, Path.GetFileName(b)));
        using (var db = new DuckDBConnection("DataSource=:memory:"))
        {
            db.Open();
            Assert.Equal(4L, Scalar<long>(db, $"SELECT count(DISTINCT example_id) FROM read_parquet('{dir}/*.parquet')"));
        }

        var found = await SecretScan.FindAsync(direct, [sig, AzuriteFixture.AccountKey]);
        output.WriteLine($"{blobs.Count} blobs scanned, {found.Count} findings{string.Concat(found.Take(5).Select(f => "\n  " + f))}");
        Assert.Empty(found);
    }

    [Fact]
    public async Task Run_with_a_read_only_sas_fails_naming_the_endpoint_and_not_the_signature()
    {
        using var tmp = new TempDir();
        var data = TestData.Build(tmp.Sub("data"), perTask: 1, copies: 1);
        var direct = new BlobContainerClient(azurite.ConnectionString, "ro" + Guid.NewGuid().ToString("N")[..12]);
        await direct.CreateAsync();
        var (connection, sig) = Sas(AccountSasPermissions.Read | AccountSasPermissions.List);
        string location = $"az://{direct.Name}/runs/ro";

        var run = await ChildProcess.RunAsync("run",
        [
            "run", "--model", TestData.TinyModel, "--dataset", data.ManifestPath, "--out", location, "--shard-size", "2",
            "--torch-threads", "1", "--storage-wait", "0", "--verbose",
        ], new Dictionary<string, string> { [OutputLocation.ConnectionVariable] = connection }, Limit);
        output.WriteLine(run.Output);
        Assert.Equal(1, run.Code);
        Assert.Contains("failed after 1 attempt(s): HTTP 403", run.Stdout);
        Assert.Contains($"{direct.Uri.GetLeftPart(UriPartial.Path)}/runs/ro", run.Output);
        AssertNoSecretPrinted(run.Output, sig, AzuriteFixture.AccountKey);
        await foreach (var _ in direct.GetBlobsAsync()) Assert.Fail("a read-only run wrote to the container");
    }
}
