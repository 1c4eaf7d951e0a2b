using LlavaMech.Runtime.Stats;
using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Azure.Data.Tables;
using Azure.Storage.Blobs;
using DuckDB.NET.Data;
using LlavaMech.Storage;
using LlavaMech.Testing;
using Xunit.Abstractions;

namespace LlavaMech.Pipeline.Tests;

/// <summary>
/// The silo configuration of the Kubernetes manifests, run on loopback: two <c>silo</c> processes (the StatefulSet's
/// <c>args: ["silo"]</c>) with exactly the environment a pod gets, i.e. every key of <c>k8s/base/config.env</c> (the
/// ConfigMap llavamech-config) plus the container's <c>env:</c> of <c>k8s/base/silo-statefulset.yaml</c> (Downward API
/// fields, the Secret's connection strings, <c>$(VAR)</c> references expanded as the kubelet does). Only what cannot be
/// the same on one machine is overridden (ports, the cluster id, the state prefix); the Secret points at Azurite, the
/// pod IP is 127.0.0.1. A job is then submitted as <c>k8s/jobs/study</c> does (<c>submit --wait</c> with the same
/// ConfigMap and Secret, <c>study.env</c>'s target) over the bundled dataset, output in Blob Storage.
/// </summary>
[Collection(PipelineCollection.Name)]
public class ManifestConfiguredSiloTests(AzuriteFixture azurite, ITestOutputHelper output)
{
    private const string Namespace = "llavamech-loopback";
    private const string ResultsContainer = "llavamech-results";

    /// <summary>8 shards of the 128 examples, so that both silos lease some (the study's 32 would make 4).</summary>
    private const int ShardSize = 16;

    /// <summary>The only config.env keys this test changes, and why: two silos on one machine need their own ports, and
    /// each run its own membership rows and job state (dead rows of earlier runs stay in Azurite's table).</summary>
    private static readonly string[] OverriddenKeys =
    [
        "LLAVAMECH_Cluster__ClusterId",
        "LLAVAMECH_Cluster__SiloPort",
        "LLAVAMECH_Cluster__GatewayPort",
        "LLAVAMECH_Telemetry__HealthPort",
        "LLAVAMECH_Pipeline__StateStore",
        // The mounted Secret's path (/etc/llavamech/tls in the pods): here a folder of the development CA's certificates.
        "LLAVAMECH_Cluster__TlsDir",
        // The pods' /models and /data volumes: here the fixture model's and the bundled dataset's folders (the outputs
        // root, the results container, stays as deployed).
        "LLAVAMECH_Pipeline__Roots__Models",
        "LLAVAMECH_Pipeline__Roots__Manifests",
        "LLAVAMECH_Pipeline__Roots__Images",
    ];

    [Fact]
    public async Task Two_silos_with_the_manifests_environment_form_a_cluster_on_azure_tables_and_run_a_job_into_blob_storage()
    {
        var total = Stopwatch.StartNew();
        using var tmp = new TempDir();
        string k8s = Path.Combine(Fixtures.RepoRoot, "k8s");
        var config = ReadEnvFile(Path.Combine(k8s, "base", "config.env"));
        var study = ReadEnvFile(Path.Combine(k8s, "jobs", "study", "study.env"));
        var podEnv = ReadContainerEnv(Path.Combine(k8s, "base", "silo-statefulset.yaml"));
        // What the manifests say this test relies on (a change there should fail here, not silently test something else).
        Assert.Equal("azuretable", config["LLAVAMECH_Cluster__Clustering"]);
        Assert.StartsWith("az://", config["LLAVAMECH_Pipeline__StateStore"]);
        Assert.Contains("LLAVAMECH_Cluster__AdvertisedAddress", podEnv.Select(e => e.Name));
        Assert.Contains(ClusterSettings.ConnectionVariable, podEnv.Select(e => e.Name));
        Assert.Contains(OutputLocation.ConnectionVariable, podEnv.Select(e => e.Name));
        Assert.Empty(podEnv.Select(e => e.Name).Intersect(config.Keys));   // env: does not shadow the ConfigMap
        // Mutual TLS: the ConfigMap names the folder where the silos mount their certificate Secret.
        var statefulSet = File.ReadAllText(Path.Combine(k8s, "base", "silo-statefulset.yaml"));
        Assert.Contains($"mountPath: {config["LLAVAMECH_Cluster__TlsDir"]}", statefulSet);
        Assert.Contains("secretName: llavamech-silo-tls", statefulSet);
        string pki = ClusterTlsTests.MakeCerts(tmp.Sub("pki"));

        string clusterId = "k8s-" + Guid.NewGuid().ToString("N")[..10];
        string conn = azurite.ConnectionString;
        var stateStore = OutputLocation.Parse(config["LLAVAMECH_Pipeline__StateStore"]);   // az://llavamech-state/llavamech
        var shared = new Dictionary<string, string>
        {
            ["LLAVAMECH_Cluster__ClusterId"] = clusterId,
            // The manifests' container, a prefix of this run's own.
            ["LLAVAMECH_Pipeline__StateStore"] = $"az://{stateStore.Container}/{clusterId}",
        };
        var siloTls = new Dictionary<string, string>(shared)
        {
            ["LLAVAMECH_Cluster__TlsDir"] = Path.Combine(pki, "silo"),
            ["LLAVAMECH_Pipeline__Roots__Models"] = Path.GetDirectoryName(TestData.TinyModel)!,
            ["LLAVAMECH_Pipeline__Roots__Manifests"] = TestData.Bundled,
            ["LLAVAMECH_Pipeline__Roots__Images"] = TestData.Bundled,
        };
        Assert.Equal("az://llavamech-results", config["LLAVAMECH_Pipeline__Roots__Outputs"]);
        var secrets = new Dictionary<string, string> { ["clustering-connection"] = conn, ["storage-connection"] = conn };

        var silos = new List<(ChildProcess Process, int HealthPort)>();
        try
        {
            for (int i = 0; i < 2; i++)
            {
                var overrides = new Dictionary<string, string>(siloTls)
                {
                    ["LLAVAMECH_Cluster__SiloPort"] = $"{PipelineHost.FreePort()}",
                    ["LLAVAMECH_Cluster__GatewayPort"] = $"{PipelineHost.FreePort()}",
                    ["LLAVAMECH_Telemetry__HealthPort"] = $"{PipelineHost.FreePort()}",
                };
                Assert.Equal(OverriddenKeys.Order(), overrides.Keys.Order());
                var env = new Dictionary<string, string>(config);
                foreach (var (k, v) in overrides) env[k] = v;
                // The pod's env: after envFrom, in order, with $(VAR) of anything defined before it.
                foreach (var e in podEnv) env[e.Name] = PodValue(e, $"llavamech-silo-{i}", secrets, env);
                Assert.Equal("127.0.0.1", env["LLAVAMECH_Cluster__AdvertisedAddress"]);   // $(POD_IP)
                Assert.Equal(config.Keys.Count + podEnv.Count, env.Count);
                foreach (var (k, v) in config)
                    if (!overrides.ContainsKey(k)) Assert.Equal(v, env[k]);   // every other ConfigMap key exactly as deployed
                // The StatefulSet's args; --parent-pid only so that no silo outlives a crashed test run.
                silos.Add((ChildProcess.Start($"silo{i}", ["silo", "--parent-pid", $"{Environment.ProcessId}"], env),
                    int.Parse(overrides["LLAVAMECH_Telemetry__HealthPort"])));
            }

            // The readiness probe: 200 once the silo joined the cluster and its runner checked its device.
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
            foreach (var (p, port) in silos) await WaitReadyAsync(http, p, port, TimeSpan.FromSeconds(60));
            output.WriteLine($"{total.Elapsed.TotalSeconds:0.0} s: both silos answer /readyz 200");

            // One cluster, through the membership table of the manifests' clustering.
            var members = new TableClient(conn, "OrleansSiloInstances");
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            int active;
            while ((active = await ActiveSilosAsync(members, clusterId)) < 2)
            {
                Assert.True(DateTime.UtcNow < deadline, $"{active} active silo(s) in the membership table of {clusterId}");
                await Task.Delay(250);
            }
            Assert.Equal(2, active);
            output.WriteLine($"{total.Elapsed.TotalSeconds:0.0} s: 2 active silos in OrleansSiloInstances for cluster {clusterId}");

            // The study Job: the ConfigMap (with this cluster's id) and the Secret, submit --wait, study.env's target; a small
            // job (smaller shards, no neuron statistics) to stay quick on two CPU cores.
            string manifest = Path.Combine(TestData.Bundled, "manifest.jsonl");
            string outPrefix = clusterId;
            var clientEnv = new Dictionary<string, string>(config);
            foreach (var (k, v) in shared) clientEnv[k] = v;
            clientEnv[ClusterSettings.ConnectionVariable] = conn;
            clientEnv["LLAVAMECH_Cluster__TlsDir"] = Path.Combine(pki, "client");   // the study Job's llavamech-client-tls
            clientEnv[OutputLocation.ConnectionVariable] = conn;
            var clock = Stopwatch.StartNew();
            var submit = await ChildProcess.RunAsync("submit",
            [
                "submit", "--wait", "--model", TestData.TinyModel, "--dataset", manifest, "--out", $"az://{ResultsContainer}/{outPrefix}",
                "--shard-size", $"{ShardSize}", "--target", study["STUDY_TARGET"], "--top-neurons", "0",
            ], clientEnv, TimeSpan.FromSeconds(150));
            output.WriteLine(submit.Output);
            Assert.True(submit.Code == 0, $"submit --wait exited with {submit.Code}");
            string runId = submit.Stdout.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)[0];
            Assert.Contains($"run {runId}: completed", submit.Stdout);
            output.WriteLine($"{total.Elapsed.TotalSeconds:0.0} s: job {runId} completed in {clock.Elapsed.TotalSeconds:0.0} s");

            // Still both ready after the work (no runner faulted), and both still running.
            foreach (var (p, port) in silos)
            {
                Assert.False(p.HasExited, $"{p.Name} exited:\n{p.Output}");
                var (status, body) = await GetAsync(http, port, "readyz");
                Assert.True(status == HttpStatusCode.OK, $"{p.Name} /readyz {(int)status}: {body}");
            }

            // The tables, read back from the blob container: every manifest line exactly once, as an example or a reject.
            var ids = File.ReadLines(manifest).Where(l => l.Trim().Length > 0).Select(l => (string)JsonNode.Parse(l)!["id"]!).ToList();
            Assert.Equal(128, ids.Count);
            var container = new BlobContainerClient(conn, ResultsContainer);
            using var db = new DuckDBConnection("DataSource=:memory:");
            db.Open();
            var commits = await DistributedProcessTests.LoadCommittedTablesAsync(container, outPrefix, tmp.Sub("download"), db);
            Assert.Equal(Enumerable.Range(0, commits.Count), commits.Select(m => m.Shard).Order());
            Assert.InRange(commits.Count, 1, (ids.Count + ShardSize - 1) / ShardSize);
            Assert.All(commits, m => Assert.Equal(runId, m.RunId));
            var examples = DuckDbSql.Rows(db, "SELECT example_id FROM examples").Select(r => (string)r[0]!).ToList();
            var rejectLines = DuckDbSql.Rows(db, "SELECT line FROM rejects").Select(r => Convert.ToInt32(r[0])).ToList();
            var rejected = rejectLines.Select(line => ids[line - 1]).ToList();   // 1-based manifest lines
            Assert.Equal(examples.Count, examples.Distinct().Count());
            Assert.Empty(examples.Intersect(rejected));
            Assert.Equal(ids.Order(StringComparer.Ordinal), examples.Concat(rejected).Order(StringComparer.Ordinal));
            Assert.Equal(ids.Count - rejected.Count, examples.Count);
            // Per-example tables: every example's rows (logit_lens: the visual tokens', so the examples with an image; no
            // neuron_stats with --top-neurons 0; causal_effects and knockout_effects are off by default, and image_part_shares
            // is LLaVA-NeXT's, so empty).
            var withImage = File.ReadLines(manifest).Where(l => l.Trim().Length > 0).Select(l => JsonNode.Parse(l)!)
                .Where(o => o["image"] is not null).Select(o => (string)o["id"]!).ToHashSet();
            foreach (var table in StatisticCatalog.ShardTableNames.Where(t => t is not (TableNames.Rejects or TableNames.NeuronStats or TableNames.CausalEffects or TableNames.KnockoutEffects or TableNames.ImagePartShares)))
            {
                var expected = (table == TableNames.LogitLens ? examples.Where(withImage.Contains) : examples).Order(StringComparer.Ordinal).ToList();
                var actual = DuckDbSql.Rows(db, $"SELECT DISTINCT example_id FROM {table}").Select(r => (string)r[0]!).Order(StringComparer.Ordinal).ToList();
                Assert.True(expected.SequenceEqual(actual), $"{table}: rows for {actual.Count} distinct examples, expected {expected.Count}");
            }
            Assert.Equal(0, DuckDbSql.Scalar<long>(db, "SELECT count(*) FROM neuron_stats"));
            Assert.Equal(0, DuckDbSql.Scalar<long>(db, "SELECT count(*) FROM causal_effects"));
            Assert.Equal(0, DuckDbSql.Scalar<long>(db, "SELECT count(*) FROM knockout_effects"));
            foreach (var table in StatisticCatalog.ShardTableNames)
                Assert.All(DuckDbSql.Rows(db, $"SELECT DISTINCT run_id FROM {table}"), r => Assert.Equal(runId, (string)r[0]!));
            Assert.True((await container.GetBlobClient($"{outPrefix}/{Finalizer.SummaryKey}").ExistsAsync()).Value);
            // The job state went to the manifests' state container.
            int stateBlobs = 0;
            await foreach (var _ in new BlobContainerClient(conn, stateStore.Container).GetBlobsAsync(new Azure.Storage.Blobs.Models.GetBlobsOptions { Prefix = clusterId + "/" }))
                stateBlobs++;
            Assert.True(stateBlobs > 0, $"no job state under az://{stateStore.Container}/{clusterId}");
            output.WriteLine($"{examples.Count} examples + {rejected.Count} rejects in {commits.Count} committed shards, each manifest line once; " +
                             $"total {total.Elapsed.TotalSeconds:0.0} s");
        }
        finally
        {
            foreach (var (p, _) in silos)
            {
                output.WriteLine($"--- {p.Name}{(p.HasExited ? " (exited)" : "")} output tail:\n{Tail(p.Output, 2000)}");
                await p.DisposeAsync();
            }
        }
    }

    /// <summary>KEY=VALUE lines of a kustomize env file (comments and blank lines skipped; values as written, empty allowed).</summary>
    internal static Dictionary<string, string> ReadEnvFile(string path)
    {
        var env = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var raw in File.ReadLines(path))
        {
            string line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            int eq = line.IndexOf('=');
            Assert.True(eq > 0, $"{path}: not KEY=VALUE: {raw}");
            Assert.True(env.TryAdd(line[..eq], line[(eq + 1)..]), $"{path}: {line[..eq]} twice");
        }
        return env;
    }

    /// <summary>One entry of a container's <c>env:</c>: a literal value, a Downward API field, or a Secret key.</summary>
    internal sealed record EnvEntry(string Name, string? Value, string? FieldPath, string? SecretKey);

    /// <summary>The <c>env:</c> list of the (single) container of a workload manifest, in order.</summary>
    internal static List<EnvEntry> ReadContainerEnv(string path)
    {
        var lines = File.ReadAllLines(path);
        int start = Array.FindIndex(lines, l => l.Trim() == "env:");
        Assert.True(start >= 0, $"{path} has no env:");
        int indent = lines[start].Length - lines[start].TrimStart().Length;
        var entries = new List<EnvEntry>();
        EnvEntry? current = null;
        for (int i = start + 1; i < lines.Length; i++)
        {
            string l = lines[i], t = l.Trim();
            if (t.Length == 0 || t.StartsWith('#')) continue;
            if (l.Length - l.TrimStart().Length <= indent) break;   // the next key of the container
            Match m;
            if ((m = Regex.Match(t, @"^- name: (\S+)$")).Success)
            {
                if (current is not null) entries.Add(current);
                current = new EnvEntry(m.Groups[1].Value, null, null, null);
            }
            else if ((m = Regex.Match(t, @"^value: (.*)$")).Success) current = current! with { Value = m.Groups[1].Value.Trim().Trim('"') };
            else if ((m = Regex.Match(t, @"^fieldPath: (\S+)$")).Success) current = current! with { FieldPath = m.Groups[1].Value };
            else if ((m = Regex.Match(t, @"^key: (\S+)$")).Success) current = current! with { SecretKey = m.Groups[1].Value };
        }
        if (current is not null) entries.Add(current);
        return entries;
    }

    /// <summary>What the kubelet gives <paramref name="e"/> in pod <paramref name="pod"/> on loopback.</summary>
    private static string PodValue(EnvEntry e, string pod, IReadOnlyDictionary<string, string> secrets, IReadOnlyDictionary<string, string> defined)
    {
        if (e.SecretKey is { } key) return secrets.TryGetValue(key, out var s) ? s : throw new InvalidOperationException($"{e.Name}: no test value for secret key {key}");
        if (e.FieldPath is { } field)
            return field switch
            {
                "metadata.name" => pod,
                "metadata.namespace" => Namespace,
                "status.podIP" => "127.0.0.1",
                _ => throw new InvalidOperationException($"{e.Name}: no test value for field {field}"),
            };
        Assert.NotNull(e.Value);
        // $(VAR) of a variable defined before; anything else stays as written (the kubelet's rule).
        return Regex.Replace(e.Value!, @"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", m => defined.TryGetValue(m.Groups[1].Value, out var v) ? v : m.Value);
    }

    private static async Task WaitReadyAsync(HttpClient http, ChildProcess p, int port, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        string last = "no answer";
        while (true)
        {
            if (p.HasExited) throw new InvalidOperationException($"{p.Name} exited before it was ready:\n{p.Output}");
            try
            {
                var (status, body) = await GetAsync(http, port, "readyz");
                if (status == HttpStatusCode.OK) return;
                last = $"{(int)status} {body}";
            }
            catch (HttpRequestException e) { last = e.Message; }
            catch (TaskCanceledException) { last = "timed out"; }
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"{p.Name}: /readyz not 200 within {timeout.TotalSeconds:0} s ({last}):\n{p.Output}");
            await Task.Delay(200);
        }
    }

    private static async Task<(HttpStatusCode Status, string Body)> GetAsync(HttpClient http, int port, string path)
    {
        using var r = await http.GetAsync($"http://127.0.0.1:{port}/{path}");
        return (r.StatusCode, await r.Content.ReadAsStringAsync());
    }

    private static async Task<int> ActiveSilosAsync(TableClient members, string clusterId)
    {
        int n = 0;
        try
        {
            await foreach (var row in members.QueryAsync<TableEntity>())
                if ((row.PartitionKey.Contains(clusterId, StringComparison.Ordinal) || row.GetString("DeploymentId") == clusterId) && row.GetString("Status") == "Active")
                    n++;
        }
        catch (Azure.RequestFailedException e) when (e.Status == 404) { }   // no table yet
        return n;
    }

    private static string Tail(string s, int n) => s.Length <= n ? s : s[^n..];
}
