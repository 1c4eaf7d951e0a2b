using LlavaMech.Runtime.Stats;
using System.Diagnostics;
using Azure.Storage.Blobs;
using DuckDB.NET.Data;
using LlavaMech.Storage;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Orleans.Runtime;
using Xunit.Abstractions;
using static LlavaMech.Storage.DuckDbSql;

namespace LlavaMech.Pipeline.Tests;

/// <summary>
/// The pipeline as it is deployed: separate silo processes (the built CLI's <c>silo</c> command) that find each other
/// through Azure Table membership (Azurite's table endpoint), keep job state in blob storage, and write their tables to
/// blob storage. One worker process is killed with SIGKILL in the middle of the job.
/// </summary>
[Collection(PipelineCollection.Name)]
public class DistributedProcessTests(AzuriteFixture azurite, ITestOutputHelper output)
{
    private const string RunId = "distributed";
    private const string Container = "results";

    private sealed record Silo(ChildProcess Process, int SiloPort, int GatewayPort);

    [Fact]
    public async Task Three_silo_processes_on_azure_tables_finish_a_job_after_one_is_killed_and_every_example_is_committed_once()
    {
        var total = Stopwatch.StartNew();
        using var tmp = new TempDir();
        var data = TestData.Build(tmp.Sub("data"), perTask: 32, copies: 4);   // 256 examples (+ 1 rejected by the worker, + bad lines)
        int expectedExamples = data.SourceOf.Count;
        string clusterId = "t" + Guid.NewGuid().ToString("N")[..12];   // fresh: dead membership rows stay until Azurite restarts
        string conn = azurite.ConnectionString;
        string outLocation = $"az://{Container}/{clusterId}";
        // azuretable clustering carries jobs between machines: mutual TLS with the development CA's certificates.
        string pki = ClusterTlsTests.MakeCerts(tmp.Sub("pki"));
        var env = new Dictionary<string, string>
        {
            [ClusterSettings.ConnectionVariable] = conn,
            [OutputLocation.ConnectionVariable] = conn,
            ["LLAVAMECH_Pipeline__PreloadModel"] = TestData.TinyModel,
            ["LLAVAMECH_Pipeline__PollMs"] = "200",
            ["LLAVAMECH_Cluster__ResponseTimeoutSeconds"] = "5",
        };
        var silos = new List<Silo>();
        IHost? client = null;
        try
        {
            for (int i = 0; i < 3; i++)
            {
                int siloPort = PipelineHost.FreePort(), gatewayPort = PipelineHost.FreePort();
                var p = ChildProcess.Start($"silo{i}",
                [
                    "silo", "--clustering", "azuretable", "--cluster-id", clusterId, "--silo-port", $"{siloPort}", "--gateway-port", $"{gatewayPort}",
                    "--advertise", "127.0.0.1", "--tls", Path.Combine(pki, "silo"), "--devices", "cpu", "--torch-threads", "1", "--state-store", $"az://state/{clusterId}",
                    "--parent-pid", $"{Environment.ProcessId}", "--verbose",
                ], env);
                silos.Add(new Silo(p, siloPort, gatewayPort));
            }
            foreach (var s in silos) await s.Process.WaitForOutputAsync("pulling work", TimeSpan.FromMinutes(2));
            output.WriteLine($"{total.Elapsed.TotalSeconds:0.0} s: 3 silo processes started");

            client = PipelineHost.BuildClient(new ClusterSettings
            {
                Clustering = "azuretable", ConnectionString = conn, ClusterId = clusterId, ResponseTimeout = TimeSpan.FromSeconds(5),
                TlsDir = Path.Combine(pki, "client"),
            });
            await client.StartAsync();
            var grains = client.Services.GetRequiredService<IClusterClient>();
            var management = grains.GetGrain<IManagementGrain>(0);
            var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(1);
            while ((await management.GetHosts(onlyActive: true)).Count < 3)
            {
                Assert.True(DateTime.UtcNow < deadline, "the three silos did not form one cluster");
                await Task.Delay(250);
            }
            output.WriteLine($"{total.Elapsed.TotalSeconds:0.0} s: cluster of 3 formed through the membership table");

            // Submit with the CLI, as a user does.
            var submit = await ChildProcess.RunAsync("submit",
            [
                "submit", "--model", TestData.TinyModel, "--dataset", data.ManifestPath, "--out", outLocation, "--run-id", RunId,
                "--shard-size", "16", "--lease-seconds", "4", "--clustering", "azuretable", "--cluster-id", clusterId, "--tls", Path.Combine(pki, "client"),
            ], env, TimeSpan.FromMinutes(2));
            output.WriteLine(submit.Output);
            Assert.Equal(0, submit.Code);
            Assert.StartsWith(RunId, submit.Stdout.Trim());

            // Watch; kill -9 a worker that holds a lease (not the job grain's silo) once a few shards are committed.
            var pipeline = new PipelineClient(grains);
            var clock = Stopwatch.StartNew();
            JobStatus status = await pipeline.StatusAsync(RunId);
            Silo? victim = null;
            int killedAt = -1;
            while (!status.IsTerminal)
            {
                Assert.True(clock.Elapsed < TimeSpan.FromMinutes(4), $"job stuck: {status}");
                await Task.Delay(250);
                try { status = await pipeline.StatusAsync(RunId); }
                catch (Exception e) when (GrainCalls.IsTransient(e)) { continue; }
                if (victim is null && status.ShardsDone >= 3 && status.ShardsPending > 0)
                {
                    var grainSilo = await SiloOfJob(management, grains);
                    var holders = (status.LeaseOwners ?? []).Select(PortOf).ToHashSet();
                    victim = silos.FirstOrDefault(s => holders.Contains(s.SiloPort) && s.SiloPort != grainSilo?.Endpoint.Port);
                    if (victim is null) continue;
                    killedAt = status.ShardsDone;
                    victim.Process.KillHard();
                    output.WriteLine($"{clock.Elapsed.TotalSeconds:0.0} s: kill -9 {victim.Process.Name} (pid {victim.Process.Pid}, silo port {victim.SiloPort}, " +
                                     $"holding a lease) at {status.ShardsDone}/{status.ShardsTotal} shards; job grain on {grainSilo}");
                }
            }
            output.WriteLine($"{clock.Elapsed.TotalSeconds:0.0} s: job {status.State}: {status.ShardsDone}/{status.ShardsTotal} shards, {status.ExamplesDone} examples, " +
                             $"{status.Attempts} failed/expired attempts");
            Assert.NotNull(victim);
            Assert.True(status.State == JobState.Completed, $"{status.State}: {status.Error}");
            Assert.True(killedAt < status.ShardsTotal);
            Assert.Equal(status.ShardsTotal, status.ShardsDone);
            Assert.Equal(0, status.ShardsFailed);
            Assert.Equal(expectedExamples + data.RuntimeRejectIds.Count, status.ExamplesDone);

            // The CLI sees the same through the membership table (the dead silo is skipped).
            var st = await ChildProcess.RunAsync("status", ["status", "--job", RunId, "--clustering", "azuretable", "--cluster-id", clusterId, "--tls", Path.Combine(pki, "client")], env,
                TimeSpan.FromMinutes(2));
            output.WriteLine(st.Output);
            Assert.Equal(0, st.Code);
            Assert.Contains($"{RunId}: completed", st.Stdout);

            // Read every table back: the committed parts, downloaded from the blob container, then DuckDB over the copies.
            await CheckTablesAsync(conn, clusterId, tmp.Sub("download"), data, status.ShardsTotal);
            output.WriteLine($"total {total.Elapsed.TotalSeconds:0.0} s");
        }
        finally
        {
            if (client is not null)
            {
                try { await client.StopAsync(new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token); } catch (Exception) { }
                client.Dispose();
            }
            foreach (var s in silos)
            {
                if (s.Process.HasExited && s != null) output.WriteLine($"--- {s.Process.Name} (exited)");
                await s.Process.DisposeAsync();
            }
            if (silos.Count > 0) output.WriteLine($"--- {silos[0].Process.Name} log tail:\n{Tail(silos[0].Process.Output, 3000)}");
        }
    }

    private async Task CheckTablesAsync(string conn, string prefix, string dir, TestData.Built data, int shards)
    {
        var container = new BlobContainerClient(conn, Container);
        using var db = new DuckDBConnection("DataSource=:memory:");
        db.Open();
        var manifests = await LoadCommittedTablesAsync(container, prefix, dir, db);
        Assert.Equal(shards, manifests.Count);
        Assert.Equal(Enumerable.Range(0, shards), manifests.Select(m => m.Shard).Order());
        Assert.All(manifests, m => Assert.Equal(RunId, m.RunId));
        int n = data.SourceOf.Count;
        var ids = Rows(db, "SELECT example_id FROM examples").Select(r => (string)r[0]!).ToList();
        Assert.Equal(n, ids.Count);
        Assert.Equal(data.SourceOf.Keys.Order(StringComparer.Ordinal), ids.Order(StringComparer.Ordinal));   // each example exactly once
        Assert.Equal(n * 4L * 4, Scalar<long>(db, "SELECT count(*) FROM head_stats"));
        Assert.Equal(n * 4L * 4, Scalar<long>(db, "SELECT count(*) FROM (SELECT DISTINCT example_id, layer, head FROM head_stats)"));
        Assert.Equal(n * 4L * 2, Scalar<long>(db, "SELECT count(*) FROM (SELECT DISTINCT example_id, layer, component FROM layer_stats)"));
        Assert.Equal(n * 4L * 2, Scalar<long>(db, "SELECT count(*) FROM layer_stats"));
        Assert.Equal(Scalar<long>(db, "SELECT count(*) FROM position_stats"),
            Scalar<long>(db, "SELECT count(*) FROM (SELECT DISTINCT example_id, layer, head, position FROM position_stats)"));
        Assert.Equal(n, Scalar<long>(db, "SELECT count(DISTINCT example_id) FROM position_stats"));
        Assert.Equal(n * 20L, Scalar<long>(db, "SELECT count(*) FROM (SELECT DISTINCT example_id, layer, neuron FROM neuron_stats)"));
        Assert.Equal(Scalar<long>(db, "SELECT count(*) FROM logit_lens"), Scalar<long>(db, "SELECT count(*) FROM (SELECT DISTINCT example_id, position, rank FROM logit_lens)"));
        Assert.Equal(data.ReaderRejects + data.RuntimeRejectIds.Count, Scalar<long>(db, "SELECT count(*) FROM rejects"));
        Assert.Equal(data.ReaderRejects + data.RuntimeRejectIds.Count, Scalar<long>(db, "SELECT count(DISTINCT line) FROM rejects"));
        // Every table holds this run's rows only; the interventions' tables are off by default and a LLaVA-1.5 model has no
        // image parts (image_part_shares is LLaVA-NeXT's), so those are empty.
        foreach (var table in StatisticCatalog.ShardTableNames)
            Assert.Equal(table is TableNames.CausalEffects or TableNames.KnockoutEffects or TableNames.ImagePartShares ? [] : [RunId],
                Rows(db, $"SELECT DISTINCT run_id FROM {table}").Select(r => (string)r[0]!));
        Assert.True((await container.GetBlobClient($"{prefix}/{Finalizer.SummaryKey}").ExistsAsync()).Value);
        Assert.True((await container.GetBlobClient($"{prefix}/{Aggregates.HeadSummaryKey}").ExistsAsync()).Value);
        output.WriteLine($"{n} examples, {manifests.Count} committed shards: every example id exactly once in every table");
    }

    /// <summary>
    /// Reads a run's tables back from blob storage: the commit manifests under <paramref name="prefix"/>, then, for every
    /// shard table, its visible part files (asserted to be exactly the committed ones: nothing of a lost attempt, nothing
    /// missing) downloaded to <paramref name="dir"/> and exposed in <paramref name="db"/> as a view named after the table.
    /// </summary>
    internal static async Task<List<CommitManifest>> LoadCommittedTablesAsync(BlobContainerClient container, string prefix, string dir, DuckDBConnection db)
    {
        var manifests = new List<CommitManifest>();
        await foreach (var b in container.GetBlobsAsync(new Azure.Storage.Blobs.Models.GetBlobsOptions { Prefix = $"{prefix}/{ShardCommitter.CommitsPrefix}" }))
        {
            var bytes = (await container.GetBlobClient(b.Name).DownloadContentAsync()).Value.Content.ToArray();
            manifests.Add(CommitManifest.Parse(bytes, b.Name));
        }
        foreach (var table in StatisticCatalog.ShardTableNames)
        {
            var committed = manifests.SelectMany(m => m.Parts.Where(p => p.Table == table)).Select(p => p.Path).Order(StringComparer.Ordinal).ToList();
            var visible = new List<string>();
            string local = Path.Combine(dir, table);
            Directory.CreateDirectory(local);
            await foreach (var b in container.GetBlobsAsync(new Azure.Storage.Blobs.Models.GetBlobsOptions { Prefix = $"{prefix}/{table}/" }))
            {
                string key = b.Name[(prefix.Length + 1)..];
                visible.Add(key);
                await container.GetBlobClient(b.Name).DownloadToAsync(Path.Combine(local, Path.GetFileName(key)));
            }
            Assert.Equal(committed, visible.Order(StringComparer.Ordinal).ToList());
            Exec(db, $"CREATE VIEW {table} AS SELECT * FROM read_parquet('{local}/*.parquet')");
        }
        return manifests;
    }

    private static async Task<SiloAddress?> SiloOfJob(IManagementGrain management, IClusterClient grains)
    {
        try
        {
            var id = grains.GetGrain<IJobGrain>(RunId).GetGrainId();
            var stats = await management.GetDetailedGrainStatistics();
            return stats.FirstOrDefault(g => g.GrainId == id)?.SiloAddress;
        }
        catch (Exception e) when (GrainCalls.IsTransient(e))
        {
            return null;
        }
    }

    /// <summary>The silo port of a lease owner "127.0.0.1:PORT@GEN/cpu#0".</summary>
    private static int PortOf(string owner)
    {
        int colon = owner.IndexOf(':'), at = owner.IndexOf('@');
        return colon > 0 && at > colon && int.TryParse(owner[(colon + 1)..at], out int port) ? port : -1;
    }

    private static string Tail(string s, int n) => s.Length <= n ? s : s[^n..];
}
