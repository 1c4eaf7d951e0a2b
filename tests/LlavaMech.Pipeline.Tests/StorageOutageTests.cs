using LlavaMech.Runtime.Stats;
using System.Diagnostics;
using System.Text;
using Azure.Storage.Blobs;
using Azure.Storage.Blobs.Models;
using DuckDB.NET.Data;
using LlavaMech.Storage;
using Xunit.Abstractions;
using static LlavaMech.Storage.DuckDbSql;

namespace LlavaMech.Pipeline.Tests;

/// <summary>
/// An output storage that cannot be reached: the job pauses and retries, then fails with a message that names the
/// endpoint and no credential, and committed shards stay whole (nothing half-visible; a resubmitted job completes
/// them and every example is committed once).
/// </summary>
[Collection(PipelineCollection.Name)]
public class StorageOutageTests(ClusterFixture fx, AzuriteFixture azurite, ITestOutputHelper output)
{
    // Not Azurite's key: a made-up one that must never show up in a job's error.
    private static readonly string SecretKey = Convert.ToBase64String(Encoding.UTF8.GetBytes("never-print-this-account-key-0123456789"));

    [Fact]
    public async Task A_closed_storage_port_fails_the_job_after_retries_with_the_endpoint_and_no_credentials()
    {
        using var tmp = new TempDir();
        var data = TestData.Build(tmp.Sub("data"), perTask: 2, copies: 1);
        int port = PipelineHost.FreePort();   // nothing listens there
        using var env = new EnvScope(OutputLocation.ConnectionVariable, AzuriteFixture.Connection(port, key: SecretKey));
        var spec = new JobSpec("closed-" + Guid.NewGuid().ToString("N")[..8], TestData.TinyModel, data.ManifestPath, "az://results/closed-port",
            new JobOptions { ShardSize = 2, StorageWaitSeconds = 0 });
        var clock = Stopwatch.StartNew();
        var status = await fx.Client.RunAsync(spec, null);
        output.WriteLine($"{clock.Elapsed.TotalSeconds:0.0} s: {status.State}: {status.Error}");

        Assert.Equal(JobState.Failed, status.State);
        Assert.StartsWith($"output storage http://127.0.0.1:{port}/devstoreaccount1/results/closed-port is unreachable", status.Error);
        Assert.Contains($"failed after {new BlobStoreOptions().MaxRetries + 1} attempt(s)", status.Error);   // each request retried with backoff
        Assert.Contains("Connection refused", status.Error);
        Assert.Contains("Committed shards are intact", status.Error);
        Assert.DoesNotContain(SecretKey, status.Error);
        Assert.DoesNotContain("AccountKey", status.Error);
        Assert.Equal(0, status.ShardsDone);
        Assert.DoesNotContain(spec.JobId, await fx.Cluster.Client.GetGrain<IJobRegistryGrain>(0).ActiveAsync());
    }

    [Fact]
    public async Task Storage_lost_mid_job_pauses_then_fails_without_half_visible_shards_and_a_resubmitted_job_completes_exactly_once()
    {
        using var tmp = new TempDir();
        var data = TestData.Build(tmp.Sub("data"), perTask: 16, copies: 3);   // 96 examples, 25 shards of 4
        using var proxy = new TcpProxy(azurite.BlobPort);
        proxy.Open();
        using var env = new EnvScope(OutputLocation.ConnectionVariable, AzuriteFixture.Connection(proxy.Port));
        string prefix = "mid-" + Guid.NewGuid().ToString("N")[..8];
        var spec = new JobSpec(prefix, TestData.TinyModel, data.ManifestPath, $"az://results/{prefix}",
            new JobOptions { ShardSize = 4, LeaseSeconds = 5, StorageWaitSeconds = 4 });
        var direct = new BlobContainerClient(azurite.ConnectionString, "results");   // Azurite itself, not through the proxy

        var clock = Stopwatch.StartNew();
        var status = await fx.Client.SubmitAsync(spec);
        while (await CountAsync(direct, $"{prefix}/{ShardCommitter.CommitsPrefix}") < 2)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromMinutes(2), "no shard committed");
            await Task.Delay(50);
        }
        proxy.Close();
        int committedBefore = await CountAsync(direct, $"{prefix}/{ShardCommitter.CommitsPrefix}");
        output.WriteLine($"{clock.Elapsed.TotalSeconds:0.0} s: storage endpoint closed with {committedBefore} shards committed");

        string? notice = null;
        while (!status.IsTerminal)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromMinutes(3), $"job stuck: {status}");
            await Task.Delay(200);
            status = await fx.Client.StatusAsync(spec.JobId);
            if (status.Notice is { } n && notice is null)
            {
                notice = n;
                output.WriteLine($"{clock.Elapsed.TotalSeconds:0.0} s: {n}");
            }
        }
        output.WriteLine($"{clock.Elapsed.TotalSeconds:0.0} s: {status.State}: {status.Error}");
        Assert.Equal(JobState.Failed, status.State);
        Assert.NotNull(notice);
        Assert.StartsWith($"paused: output storage http://127.0.0.1:{proxy.Port}/devstoreaccount1/results/{prefix} unreachable", notice);
        Assert.StartsWith($"output storage http://127.0.0.1:{proxy.Port}/devstoreaccount1/results/{prefix} is unreachable: gave up after", status.Error);
        Assert.Contains("Committed shards are intact", status.Error);
        Assert.DoesNotContain(AzuriteFixture.AccountKey, status.Error);
        Assert.True(status.ShardsDone < status.ShardsTotal);

        // Nothing half-visible: every visible part belongs to a committed shard, and no committed part is lost.
        var (manifests, visible) = await ReadOutputAsync(direct, prefix);
        output.WriteLine($"after the failure: {manifests.Count} committed shards, {visible.Count} visible parts");
        Assert.True(manifests.Count >= committedBefore);
        var parts = manifests.SelectMany(m => m.Parts).ToList();
        Assert.All(visible, v => Assert.Contains(parts, p => p.Path == v));
        foreach (var p in parts.Where(p => !visible.Contains(p.Path)))
            Assert.True((await direct.GetBlobClient($"{prefix}/{p.StagingPath}").ExistsAsync()).Value, $"committed part {p.Path} is lost");
        var seen = await ExampleIdsAsync(direct, prefix, visible, tmp.Sub("before"));
        Assert.Equal(seen.Count, seen.Distinct().Count());
        // Each visible part is a whole file: its rows are the rows its commit manifest lists.
        Assert.Equal(parts.Where(p => p.Table == TableNames.Examples && visible.Contains(p.Path)).Sum(p => p.Rows), seen.Count);

        // The storage is back: the same job resumes from the committed shards and completes; every example exactly once.
        proxy.Open();
        await proxy.WaitUntilAcceptingAsync(TimeSpan.FromSeconds(10));
        var again = await fx.Client.RunAsync(spec, null);
        output.WriteLine($"{clock.Elapsed.TotalSeconds:0.0} s: resubmitted: {again.State}, {again.ShardsSkipped} of {again.ShardsTotal} shards committed before");
        Assert.True(again.State == JobState.Completed, $"{again.State}: {again.Error}");
        Assert.True(again.ShardsSkipped >= manifests.Count, $"{again.ShardsSkipped} shards skipped, {manifests.Count} were committed");   // a straggler may commit one more
        (manifests, visible) = await ReadOutputAsync(direct, prefix);
        Assert.Equal(again.ShardsTotal, manifests.Count);
        Assert.Equal(manifests.SelectMany(m => m.Parts).Select(p => p.Path).Order(StringComparer.Ordinal), visible.Order(StringComparer.Ordinal));
        var ids = await ExampleIdsAsync(direct, prefix, visible, tmp.Sub("after"));
        Assert.Equal(data.SourceOf.Keys.Order(StringComparer.Ordinal), ids.Order(StringComparer.Ordinal));
    }

    private static async Task<int> CountAsync(BlobContainerClient c, string prefix)
    {
        int n = 0;
        try
        {
            await foreach (var _ in c.GetBlobsAsync(new GetBlobsOptions { Prefix = prefix })) n++;
        }
        catch (Azure.RequestFailedException e) when (e.Status == 404) { }
        return n;
    }

    private static async Task<(List<CommitManifest> Manifests, HashSet<string> Visible)> ReadOutputAsync(BlobContainerClient c, string prefix)
    {
        var manifests = new List<CommitManifest>();
        await foreach (var b in c.GetBlobsAsync(new GetBlobsOptions { Prefix = $"{prefix}/{ShardCommitter.CommitsPrefix}" }))
            manifests.Add(CommitManifest.Parse((await c.GetBlobClient(b.Name).DownloadContentAsync()).Value.Content.ToArray(), b.Name));
        var visible = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in StatisticCatalog.ShardTableNames)
            await foreach (var b in c.GetBlobsAsync(new GetBlobsOptions { Prefix = $"{prefix}/{t}/" }))
                visible.Add(b.Name[(prefix.Length + 1)..]);
        return (manifests, visible);
    }

    /// <summary>example_id of every visible examples part (downloaded, then DuckDB).</summary>
    private static async Task<List<string>> ExampleIdsAsync(BlobContainerClient c, string prefix, IEnumerable<string> visible, string dir)
    {
        Directory.CreateDirectory(dir);
        var keys = visible.Where(v => v.StartsWith(TableNames.Examples + "/", StringComparison.Ordinal)).ToList();
        if (keys.Count == 0) return [];
        foreach (var k in keys) await c.GetBlobClient($"{prefix}/{k}").DownloadToAsync(Path.Combine(dir, Path.GetFileName(k)));
        using var db = new DuckDBConnection("DataSource=:memory:");
        db.Open();
        return Rows(db, $"SELECT example_id FROM read_parquet('{dir}/*.parquet')").Select(r => (string)r[0]!).ToList();
    }
}
