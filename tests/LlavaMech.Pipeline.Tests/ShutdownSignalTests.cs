using LlavaMech.Runtime.Stats;
using System.Diagnostics;
using DuckDB.NET.Data;
using LlavaMech.Storage;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Xunit.Abstractions;
using static LlavaMech.Storage.DuckDbSql;

namespace LlavaMech.Pipeline.Tests;

/// <summary>
/// Real processes, real signals: <c>run</c> and <c>silo</c> (the built CLI) get SIGTERM or SIGINT (as Kubernetes,
/// systemd, timeout or Ctrl+C send them) in the middle of a job.
/// </summary>
public class ShutdownSignalTests(ITestOutputHelper output)
{
    private const int SigInt = 2, SigTerm = 15;

    [Theory]
    [InlineData(SigTerm, 143, "SIGTERM")]
    [InlineData(SigInt, 130, "SIGINT")]
    public async Task Run_stops_on_a_signal_with_its_exit_code_leaves_no_partial_commit_and_the_same_command_resumes(int signal, int exitCode, string name)
    {
        using var tmp = new TempDir();
        var data = TestData.Build(tmp.Sub("data"), perTask: 16, copies: 4);   // 128 examples (+ 1 rejected by the worker, + bad lines)
        string outDir = tmp.Sub("out");
        string[] args =
        [
            "run", "--model", TestData.TinyModel, "--dataset", data.ManifestPath, "--out", outDir, "--run-id", "signals",
            "--shard-size", "4", "--batch-size", "1", "--prefix-reuse", "off", "--torch-threads", "1",
        ];
        int committedAtSignal, total;
        await using (var run = ChildProcess.Start("run", args))
        {
            await WaitForCommitsAsync(run, outDir, 1, TimeSpan.FromMinutes(2));
            committedAtSignal = Commits(outDir).Count;
            var clock = Stopwatch.StartNew();
            run.Signal(signal);
            int code = await run.WaitAsync(TimeSpan.FromSeconds(20));
            output.WriteLine($"{name} after {committedAtSignal} commits; exit {code} after {clock.Elapsed.TotalSeconds:0.00} s\n{run.Output}");
            Assert.Equal(exitCode, code);
            Assert.Contains($"interrupted by {name}", run.Output);
            Assert.Contains("Run the same command again to resume", run.Output);
            var m = System.Text.RegularExpressions.Regex.Match(run.Output, @"(\d+) of (\d+) shards are committed");
            Assert.True(m.Success, run.Output);
            total = int.Parse(m.Groups[2].Value);
        }

        // Only whole shards: every visible part file is a committed one, and every committed part is there.
        var commits = AssertOnlyCommittedParts(outDir);
        Assert.InRange(commits.Count, committedAtSignal, total - 1);
        output.WriteLine($"{commits.Count} of {total} shards committed when the run stopped");

        var resumed = await ChildProcess.RunAsync("resume", args, null, TimeSpan.FromMinutes(3));
        output.WriteLine(resumed.Stdout);
        Assert.True(resumed.Code == 0, resumed.Output);
        Assert.Contains($"{commits.Count} committed before", resumed.Stdout);
        Assert.Equal(total, AssertOnlyCommittedParts(outDir).Count);
        AssertEveryExampleOnce(outDir, data);
    }

    [Fact]
    public async Task A_silo_stopped_by_SIGTERM_gives_its_leases_back_at_once_and_another_silo_finishes_the_job()
    {
        using var tmp = new TempDir();
        var data = TestData.Build(tmp.Sub("data"), perTask: 16, copies: 4);
        string outDir = tmp.Sub("out"), state = tmp.Sub("state");
        string clusterId = "sig" + Guid.NewGuid().ToString("N")[..10];
        int primaryPort = PipelineHost.FreePort(), primaryGateway = PipelineHost.FreePort();
        var env = new Dictionary<string, string>
        {
            ["LLAVAMECH_Pipeline__PreloadModel"] = TestData.TinyModel,
            ["LLAVAMECH_Pipeline__PollMs"] = "100",
            ["LLAVAMECH_Cluster__ResponseTimeoutSeconds"] = "5",
        };
        ChildProcess Silo(string name, int port, int gateway, string devices) => ChildProcess.Start(name,
        [
            "silo", "--cluster-id", clusterId, "--silo-port", $"{port}", "--gateway-port", $"{gateway}", "--primary-port", $"{primaryPort}",
            "--devices", devices, "--torch-threads", "1", "--state-store", state, "--parent-pid", $"{Environment.ProcessId}", "--verbose",
        ], env);

        // The primary hosts grains only; the first worker runs shards until it gets SIGTERM, then a second one takes over.
        await using var primary = Silo("primary", primaryPort, primaryGateway, "none");
        await primary.WaitForOutputAsync("declares no devices", TimeSpan.FromMinutes(2));
        using var client = PipelineHost.BuildClient(new ClusterSettings { GatewayPort = primaryGateway, ClusterId = clusterId, ResponseTimeout = TimeSpan.FromSeconds(5) });
        await client.StartAsync();
        try
        {
            var pipeline = new PipelineClient(client.Services.GetRequiredService<IClusterClient>());
            const int leaseSeconds = 60;
            var submit = await ChildProcess.RunAsync("submit",
            [
                "submit", "--model", TestData.TinyModel, "--dataset", data.ManifestPath, "--out", outDir, "--run-id", "silo-signal",
                "--shard-size", "16", "--batch-size", "1", "--prefix-reuse", "off", "--lease-seconds", $"{leaseSeconds}", "--gateway-port", $"{primaryGateway}", "--cluster-id", clusterId,
            ], null, TimeSpan.FromMinutes(2));
            Assert.True(submit.Code == 0, submit.Output);
            // Submitted while the primary is the only silo, so the job grain lives there and outlives the worker.
            int port1 = PipelineHost.FreePort();
            await using var worker1 = Silo("worker1", port1, PipelineHost.FreePort(), "cpu");

            // SIGTERM once the worker has committed a shard and holds two leases (shards of 16 examples, one per pass, no
            // shared prefixes:
            // long enough that the signal lands while they run).
            var clock = Stopwatch.StartNew();
            JobStatus status;
            while (true)
            {
                Assert.True(clock.Elapsed < TimeSpan.FromMinutes(2), "the worker never held two leases after a commit");
                status = await pipeline.StatusAsync("silo-signal");
                Assert.False(status.IsTerminal, $"job ended before the signal: {status.State} {status.Error}");
                // Both of its lease loops busy: a shard that finishes between this status and the signal leaves the other.
                if (status.ShardsDone >= 1 && (status.LeaseOwners ?? []).Count(o => o.Contains($":{port1}@", StringComparison.Ordinal)) >= 2) break;
                await Task.Delay(20);
            }
            var signalled = Stopwatch.StartNew();
            worker1.Signal(SigTerm);
            int code = await worker1.WaitAsync(TimeSpan.FromSeconds(20));
            double exitSeconds = signalled.Elapsed.TotalSeconds;
            output.WriteLine($"SIGTERM at {status.ShardsDone}/{status.ShardsTotal} shards, leases {string.Join(", ", status.LeaseOwners ?? [])}; " +
                             $"worker1 exit {code} after {exitSeconds:0.00} s\n{Tail(worker1.Output, 3000)}");
            output.WriteLine($"--- primary (job grain) log tail:\n{Tail(primary.Output, 2000)}");
            Assert.Equal(0, code);
            Assert.Contains("SIGTERM received", worker1.Output);
            Assert.Contains("lease released", worker1.Output);
            Assert.Contains("llavamech silo: stopped", worker1.Output);
            // Every lease the worker gave up reached the job grain (on the primary: it was activated there) as a release.
            int given = Count(worker1.Output, "abandoned, lease released");
            Assert.True(given >= 1, "worker1 held a lease but released none");
            for (var wait = Stopwatch.StartNew(); Count(primary.Output, "released shard") < given;)
            {
                Assert.True(wait.Elapsed < TimeSpan.FromSeconds(5), $"the job grain logged {Count(primary.Output, "released shard")} releases, the worker {given}");
                await Task.Delay(50);
            }

            // The leases are back with the job now, long before they would expire; nothing counts as a failed attempt.
            // (When the silo that leaves held the job's directory entry, the job grain may be activated afresh: it then
            // rebuilds its shards from the output for a moment, and holds no lease either.)
            var after = await pipeline.StatusAsync("silo-signal");
            for (var settle = Stopwatch.StartNew(); after.ShardsDone + after.ShardsPending + after.ShardsRunning < after.ShardsTotal || after.ShardsTotal == 0;)
            {
                Assert.True(settle.Elapsed < TimeSpan.FromSeconds(10), $"job shards not known 10 s after the worker left: {after}");
                await Task.Delay(50);
                after = await pipeline.StatusAsync("silo-signal");
            }
            output.WriteLine($"after the exit: {after.ShardsDone} done, {after.ShardsRunning} running, {after.ShardsPending} pending, {after.Attempts} failed/expired attempts");
            Assert.Equal(0, after.ShardsRunning);
            Assert.Empty(after.LeaseOwners ?? []);
            Assert.True(after.ShardsPending > 0, "nothing left for the second worker");
            Assert.Equal(0, after.Attempts);
            AssertOnlyCommittedParts(outDir);

            await using var worker2 = Silo("worker2", PipelineHost.FreePort(), PipelineHost.FreePort(), "cpu");
            while (!(status = await pipeline.StatusAsync("silo-signal")).IsTerminal)
            {
                Assert.True(signalled.Elapsed < TimeSpan.FromSeconds(leaseSeconds), $"job not done {leaseSeconds} s after the signal (waiting for a lease to expire?): {status}");
                await Task.Delay(100);
            }
            output.WriteLine($"job {status.State} {signalled.Elapsed.TotalSeconds:0.0} s after the signal; {status.Attempts} failed/expired attempts");
            Assert.True(status.State == JobState.Completed, $"{status.State}: {status.Error}");
            Assert.Equal(0, status.Attempts);
            Assert.Equal(status.ShardsTotal, AssertOnlyCommittedParts(outDir).Count);
            AssertEveryExampleOnce(outDir, data);
        }
        finally
        {
            try { await client.StopAsync(new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token); } catch (Exception) { }
        }
    }

    private static List<CommitManifest> Commits(string outDir)
    {
        string dir = Path.Combine(outDir, ShardCommitter.CommitsPrefix.TrimEnd('/'));
        return Directory.Exists(dir)
            ? Directory.GetFiles(dir, "*.json").Select(f => CommitManifest.Parse(File.ReadAllBytes(f), f)).ToList()
            : [];
    }

    private static async Task WaitForCommitsAsync(ChildProcess p, string outDir, int n, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (Commits(outDir).Count < n)
        {
            if (p.HasExited) throw new InvalidOperationException($"{p.Name} exited before committing {n} shard(s):\n{p.Output}");
            if (clock.Elapsed > timeout) throw new TimeoutException($"{p.Name}: no commit within {timeout.TotalSeconds:0} s:\n{p.Output}");
            await Task.Delay(20);
        }
    }

    /// <summary>Asserts that the part files a reader sees (<c>&lt;table&gt;/*.parquet</c>) are exactly the committed ones; returns the commits.</summary>
    private static List<CommitManifest> AssertOnlyCommittedParts(string outDir)
    {
        var commits = Commits(outDir);
        foreach (var table in StatisticCatalog.ShardTableNames)
        {
            var committed = commits.SelectMany(m => m.Parts.Where(p => p.Table == table)).Select(p => p.Path).Order(StringComparer.Ordinal).ToList();
            string dir = Path.Combine(outDir, table);
            var visible = Directory.Exists(dir)
                ? Directory.GetFiles(dir, "*.parquet").Select(f => $"{table}/{Path.GetFileName(f)}").Order(StringComparer.Ordinal).ToList()
                : [];
            Assert.Equal(committed, visible);
        }
        return commits;
    }

    private static void AssertEveryExampleOnce(string outDir, TestData.Built data)
    {
        using var db = new DuckDBConnection("DataSource=:memory:");
        db.Open();
        string T(string table) => $"read_parquet('{outDir}/{table}/*.parquet')";
        int n = data.SourceOf.Count;
        var ids = Rows(db, $"SELECT example_id FROM {T("examples")}").Select(r => (string)r[0]!).ToList();
        Assert.Equal(data.SourceOf.Keys.Order(StringComparer.Ordinal), ids.Order(StringComparer.Ordinal));
        Assert.Equal(n * 4L * 4, Scalar<long>(db, $"SELECT count(*) FROM {T("head_stats")}"));
        Assert.Equal(n * 4L * 4, Scalar<long>(db, $"SELECT count(*) FROM (SELECT DISTINCT example_id, layer, head FROM {T("head_stats")})"));
        Assert.Equal(n * 4L * 2, Scalar<long>(db, $"SELECT count(*) FROM (SELECT DISTINCT example_id, layer, component FROM {T("layer_stats")})"));
        Assert.Equal(n * 4L * 2, Scalar<long>(db, $"SELECT count(*) FROM {T("layer_stats")}"));
        Assert.Equal(data.ReaderRejects + data.RuntimeRejectIds.Count, Scalar<long>(db, $"SELECT count(*) FROM {T("rejects")}"));
    }

    private static int Count(string text, string what) => (text.Length - text.Replace(what, "", StringComparison.Ordinal).Length) / what.Length;

    private static string Tail(string s, int n) => s.Length <= n ? s : s[^n..];
}
