namespace LlavaMech.Storage.Tests;

internal sealed class SimulatedCrash(string step) : Exception("simulated crash at " + step);

/// <summary>The shard commit protocol, run against each store.</summary>
public abstract class CommitContract : IDisposable
{
    /// <summary>Parts per shard: one per shard table.</summary>
    private static readonly int Tables = StatisticCatalog.ShardTables.Count;

    protected readonly TempDir Scratch = new();

    /// <summary>A fresh, empty store.</summary>
    protected abstract IObjectStore NewStore();

    /// <summary>Another client of the same store (a second worker).</summary>
    protected abstract IObjectStore SameStore(IObjectStore store);

    public void Dispose() => Scratch.Dispose();

    private ShardCommitter Committer(IObjectStore store, string? crashAt = null, Func<string, Task>? hook = null)
    {
        var c = new ShardCommitter(store, new ShardCommitterOptions { ScratchDir = Scratch.Path });
        c.StepHook = async step =>
        {
            if (hook is not null) await hook(step);
            if (step == crashAt) throw new SimulatedCrash(step);
        };
        return c;
    }

    /// <summary>
    /// Rows that a globbing reader sees in &lt;table&gt;/*.parquet: the listing's Parquet files read by DuckDB (for a local
    /// store also checked against DuckDB's own glob over the folder).
    /// </summary>
    protected async Task<long> VisibleRows(IObjectStore store, string table, string select = "count(*)")
    {
        var parts = (await store.ListAllAsync(table + "/")).Where(o => o.Key.EndsWith(".parquet")).ToList();
        long viaListing = 0;
        if (parts.Count > 0)
        {
            var paths = new List<string>();
            foreach (var p in parts)
            {
                string? local = store.LocalPath(p.Key);
                if (local is null)
                {
                    local = Scratch.File(Guid.NewGuid().ToString("N") + ".parquet");
                    Assert.True(await store.DownloadToFileAsync(p.Key, local));
                }
                paths.Add(local);
            }
            viaListing = Duck.Scalar<long>($"SELECT {select} FROM read_parquet([{string.Join(",", paths.Select(Duck.Q))}])");
        }
        if (store is LocalObjectStore l && select == "count(*)")
            Assert.Equal(Duck.GlobCount(l.Root, table), viaListing);
        return viaListing;
    }

    private async Task AssertVisible(IObjectStore store, Dictionary<string, long> expected)
    {
        foreach (var table in StatisticCatalog.ShardTableNames)
        {
            long seen = await VisibleRows(store, table);
            Assert.True(expected.GetValueOrDefault(table) == seen, $"{table}: expected {expected.GetValueOrDefault(table)} visible rows, saw {seen}");
        }
    }

    private static Dictionary<string, long> Sum(params int[] examplesPerShard)
    {
        var total = new Dictionary<string, long>();
        foreach (int n in examplesPerShard)
            foreach (var (t, c) in Sample.RowCounts(n))
                total[t] = total.GetValueOrDefault(t) + c;
        return total;
    }

    [Fact]
    public async Task Committed_shards_read_back_exactly()
    {
        var store = NewStore();
        var c = Committer(store);
        int[] sizes = [3, 2, 4];
        for (int s = 0; s < sizes.Length; s++)
        {
            Assert.False(await c.IsCommittedAsync(s));
            var r = await c.CommitAsync(s, Sample.Shard(s, sizes[s]));
            Assert.Equal(CommitOutcome.Committed, r.Outcome);
            Assert.True(r.Won);
            Assert.Equal(Tables, r.PartsMoved);
            Assert.True(await c.IsCommittedAsync(s));
        }
        Assert.Equal(new[] { 0, 1, 2 }, await c.CommittedShardsAsync());
        await AssertVisible(store, Sum(sizes));
        Assert.Empty(await store.ListAllAsync(ShardCommitter.StagingPrefix));

        // Exact values survive the trip: example ids, targets, nullable correctness, per-shard head values.
        Assert.Equal(9L, await VisibleRows(store, TableNames.Examples, "count(DISTINCT example_id)"));
        Assert.Equal((long)(3 * 100 + 3 + 2 * 100 + 1 + 4 * 100 + 6), await VisibleRows(store, TableNames.Examples, "sum(target_id)"));
        Assert.Equal(4L, await VisibleRows(store, TableNames.Examples, "count(*) FILTER (correct IS NULL)"));   // i % 3 == 0: i = 0 in each shard, i = 3 in shard 2
        Assert.Equal(0L, await VisibleRows(store, TableNames.HeadStats, "count(*) - count(DISTINCT (example_id, layer, head))"));
        Assert.Equal(1L, await VisibleRows(store, TableNames.HeadStats,
            "count(*) FILTER (example_id = 's2-e3' AND layer = 2 AND head = 1 AND log_prob_increase = 9 * 0.25 + 3)"));
        Assert.Equal(1L, await VisibleRows(store, TableNames.Rejects, "count(*) FILTER (line = 201 AND reason = 'missing image')"));
        Assert.Equal(1L, await VisibleRows(store, TableNames.LogitLens, "count(DISTINCT run_id || model_fingerprint)"));

        var m = (await c.ReadManifestAsync(1))!;
        Assert.Equal((1, Sample.Run, Sample.Model, CommitManifest.CurrentFormat), (m.Shard, m.RunId, m.ModelFingerprint, m.Format));
        Assert.Equal(StatisticCatalog.ShardTableNames, m.Parts.Select(p => p.Table));
        Assert.Equal(2 * Sample.Layers * Sample.Heads, m.RowsOf(TableNames.HeadStats));
        Assert.All(m.Parts, p => Assert.Equal($"{p.Table}/part-00001-{m.AttemptId}.parquet", p.Path));
        foreach (var p in m.Parts)
            Assert.Equal(p.Bytes, (await store.ListAllAsync(p.Path)).Single().Size);
        Assert.Equal(3, (await c.CommittedPartsAsync(TableNames.Examples)).Count);

        var repair = await c.RepairAsync();
        Assert.Equal(new RepairReport(3, 0, 0, [], []), repair with { MissingParts = [], UnexpectedParts = [] });
        Assert.Empty(repair.MissingParts);
        Assert.Empty(repair.UnexpectedParts);
    }

    [Fact]
    public async Task A_committed_shard_is_never_written_again()
    {
        var store = NewStore();
        var first = await Committer(store).CommitAsync(5, Sample.Shard(5, 2));
        var before = (await store.ListAllAsync("")).Select(o => o.Key).ToList();

        var again = await Committer(SameStore(store)).CommitAsync(5, Sample.Shard(5, 4, offset: 100));
        Assert.Equal(CommitOutcome.AlreadyCommitted, again.Outcome);
        Assert.Null(again.AttemptId);
        Assert.Equal(first.Manifest.AttemptId, again.Manifest.AttemptId);
        Assert.Equal(0, again.PartsMoved);
        Assert.Equal(before, (await store.ListAllAsync("")).Select(o => o.Key));
        await AssertVisible(store, Sum(2));
    }

    [Fact]
    public async Task Racing_committers_of_one_shard_have_one_winner_and_no_duplicates()
    {
        var store = NewStore();
        const int racers = 4;
        using var barrier = new Barrier(racers);
        // Every racer stages its parts before any tries to commit: a true race on the manifest.
        Task Gate(string step) => step == "staged" ? Task.Run(() => barrier.SignalAndWait(TimeSpan.FromSeconds(30))) : Task.CompletedTask;
        var results = await Task.WhenAll(Enumerable.Range(0, racers).Select(i => Task.Run(() =>
            Committer(SameStore(store), hook: Gate).CommitAsync(7, Sample.Shard(7, 2 + i, offset: 10 * i)))));

        var winners = results.Where(r => r.Won).ToList();
        var winner = Assert.Single(winners);
        Assert.All(results, r => Assert.Equal(winner.AttemptId, r.Manifest.AttemptId));
        Assert.All(results.Where(r => !r.Won), r => Assert.NotNull(r.AttemptId));
        int examples = results.ToList().IndexOf(winner) + 2;
        await AssertVisible(store, Sum(examples));
        Assert.Empty(await store.ListAllAsync(ShardCommitter.StagingPrefix));   // losers removed their own parts
        Assert.Equal(new[] { 7 }, await Committer(store).CommittedShardsAsync());
    }

    [Fact]
    public async Task Crash_before_commit_leaves_invisible_staging_and_a_rerun_completes()
    {
        var store = NewStore();
        await Committer(store).CommitAsync(0, Sample.Shard(0, 1));
        await Assert.ThrowsAsync<SimulatedCrash>(() => Committer(store, crashAt: "staged").CommitAsync(1, Sample.Shard(1, 3)));

        Assert.Equal(Tables, (await store.ListAllAsync(ShardCommitter.StagingPrefix)).Count);
        Assert.False(await Committer(store).IsCommittedAsync(1));
        await AssertVisible(store, Sum(1));   // only shard 0

        var rerun = await Committer(SameStore(store)).CommitAsync(1, Sample.Shard(1, 3));
        Assert.True(rerun.Won);
        await AssertVisible(store, Sum(1, 3));

        var repair = await Committer(store).RepairAsync();
        Assert.Equal(Tables, repair.StagingDeleted);   // the crashed attempt can no longer win
        Assert.Empty(await store.ListAllAsync(ShardCommitter.StagingPrefix));
        await AssertVisible(store, Sum(1, 3));
    }

    [Fact]
    public async Task Crash_after_commit_before_publishing_is_rolled_forward_by_the_rerun()
    {
        var store = NewStore();
        await Assert.ThrowsAsync<SimulatedCrash>(() => Committer(store, crashAt: "committed").CommitAsync(2, Sample.Shard(2, 3)));
        Assert.True(await Committer(store).IsCommittedAsync(2));
        await AssertVisible(store, []);   // committed but not yet published: nothing visible, never a duplicate

        var rerun = await Committer(SameStore(store)).CommitAsync(2, Sample.Shard(2, 5, offset: 1));
        Assert.Equal(CommitOutcome.AlreadyCommitted, rerun.Outcome);
        Assert.Equal(Tables, rerun.PartsMoved);
        await AssertVisible(store, Sum(3));   // the committed attempt's rows, not the rerun's
        Assert.Empty(await store.ListAllAsync(ShardCommitter.StagingPrefix));
    }

    [Fact]
    public async Task Crash_while_publishing_is_completed_by_repair()
    {
        var store = NewStore();
        await Assert.ThrowsAsync<SimulatedCrash>(() =>
            Committer(store, crashAt: "published:" + TableNames.HeadStats).CommitAsync(3, Sample.Shard(3, 2)));
        var partial = Sum(2);
        foreach (var t in new[] { TableNames.PositionStats, TableNames.NeuronStats, TableNames.LogitLens, TableNames.Rejects })
            partial[t] = 0;
        await AssertVisible(store, partial);

        var repair = await Committer(SameStore(store)).RepairAsync();
        Assert.Equal((1, Tables - 3, 0), (repair.CommittedShards, repair.PartsRolledForward, repair.StagingDeleted));
        Assert.Empty(repair.MissingParts);
        Assert.Empty(repair.UnexpectedParts);
        await AssertVisible(store, Sum(2));

        var again = await Committer(store).RepairAsync();
        Assert.Equal((1, 0, 0), (again.CommittedShards, again.PartsRolledForward, again.StagingDeleted));
    }

    [Fact]
    public async Task Stale_uncommitted_staging_is_only_removed_when_asked()
    {
        var store = NewStore();
        await Assert.ThrowsAsync<SimulatedCrash>(() => Committer(store, crashAt: "staged").CommitAsync(4, Sample.Shard(4, 1)));
        Assert.Equal(0, (await Committer(store).RepairAsync()).StagingDeleted);
        Assert.Equal(Tables, (await store.ListAllAsync(ShardCommitter.StagingPrefix)).Count);
        Assert.Equal(0, (await Committer(store).RepairAsync(TimeSpan.FromHours(1))).StagingDeleted);   // younger than that
        Assert.Equal(Tables, (await Committer(store).RepairAsync(TimeSpan.Zero)).StagingDeleted);
        Assert.Empty(await store.ListAllAsync(ShardCommitter.StagingPrefix));
    }

    [Fact]
    public async Task Another_model_cannot_commit_into_a_shard_of_the_output()
    {
        var store = NewStore();
        await Committer(store).CommitAsync(0, Sample.Shard(0, 1));
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => Committer(store).CommitAsync(0, Sample.Shard(0, 1, model: "fp-other")));
        Assert.Contains("fp-other", e.Message);
        // A rerun under a new run id of the same model just skips the shard.
        Assert.Equal(CommitOutcome.AlreadyCommitted, (await Committer(store).CommitAsync(0, Sample.Shard(0, 1, run: "run-2"))).Outcome);
    }

    [Fact]
    public async Task Lost_committed_part_is_reported_not_hidden()
    {
        var store = NewStore();
        var r = await Committer(store).CommitAsync(0, Sample.Shard(0, 1));
        var part = r.Manifest.Parts.Single(p => p.Table == TableNames.HeadStats);
        await store.DeleteAsync(part.Path);
        var repair = await Committer(store).RepairAsync();
        Assert.Equal(new[] { part.Path }, repair.MissingParts);
        await Assert.ThrowsAsync<CommitIntegrityException>(() => Committer(store).CommitAsync(0, Sample.Shard(0, 1)));

        await store.PutAsync("head_stats/part-00009-0123abcd.parquet", new byte[] { 1 });
        Assert.Equal(new[] { "head_stats/part-00009-0123abcd.parquet" }, (await Committer(store).RepairAsync()).UnexpectedParts);
    }

    [Fact]
    public async Task Invalid_commits_are_refused()
    {
        var c = Committer(NewStore());
        await Assert.ThrowsAsync<ArgumentException>(() => c.CommitAsync(0, Array.Empty<TableBatch>()));
        var t = Sample.Shard(0, 1);
        await Assert.ThrowsAsync<ArgumentException>(() => c.CommitAsync(0, [t.Of<ExampleRow>(), t.Of<ExampleRow>()]));
        await Assert.ThrowsAsync<ArgumentException>(() => c.CommitAsync(0, [t.Of<ExampleRow>(), Sample.Shard(0, 1, run: "other").Of<HeadStatRow>()]));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => c.CommitAsync(-1, t));
    }
}

/// <summary>
/// A real store whose put-if-absent of commit manifests stores the object but answers "exists", as a blob upload does
/// when its first try succeeded, the response was lost and the retry got 409.
/// </summary>
internal sealed class LostResponseStore(IObjectStore inner) : IObjectStore
{
    public string Location => inner.Location;
    public Task PutAsync(string key, Stream content, CancellationToken ct = default) => inner.PutAsync(key, content, ct);
    public async Task<bool> PutIfAbsentAsync(string key, Stream content, CancellationToken ct = default)
    {
        bool created = await inner.PutIfAbsentAsync(key, content, ct);
        return key.StartsWith(ShardCommitter.CommitsPrefix) ? false : created;
    }
    public Task<Stream?> OpenReadAsync(string key, CancellationToken ct = default) => inner.OpenReadAsync(key, ct);
    public Task<bool> ExistsAsync(string key, CancellationToken ct = default) => inner.ExistsAsync(key, ct);
    public IAsyncEnumerable<ObjectInfo> ListAsync(string prefix, CancellationToken ct = default) => inner.ListAsync(prefix, ct);
    public Task<bool> DeleteAsync(string key, CancellationToken ct = default) => inner.DeleteAsync(key, ct);
    public Task<bool> MoveAsync(string sourceKey, string destinationKey, CancellationToken ct = default) => inner.MoveAsync(sourceKey, destinationKey, ct);
    public string? LocalPath(string key) => inner.LocalPath(key);
    public Task<VersionedObject?> GetVersionedAsync(string key, CancellationToken ct = default) => inner.GetVersionedAsync(key, ct);
    public Task<string?> PutIfVersionAsync(string key, ReadOnlyMemory<byte> content, string? expectedVersion, CancellationToken ct = default) =>
        inner.PutIfVersionAsync(key, content, expectedVersion, ct);
    public Task<bool> DeleteIfVersionAsync(string key, string expectedVersion, CancellationToken ct = default) => inner.DeleteIfVersionAsync(key, expectedVersion, ct);
}

public sealed class LocalCommitTests : CommitContract
{
    [Fact]
    public async Task A_commit_whose_manifest_put_answered_exists_still_wins_when_the_manifest_is_its_own()
    {
        var inner = NewStore();
        var r = await new ShardCommitter(new LostResponseStore(inner)).CommitAsync(0, Sample.Shard(0, 2));
        Assert.Equal(CommitOutcome.Committed, r.Outcome);
        Assert.Equal(r.AttemptId, r.Manifest.AttemptId);
        Assert.Equal(Sample.RowCounts(2)[TableNames.HeadStats], await VisibleRows(inner, TableNames.HeadStats));
        Assert.Empty(await inner.ListAllAsync(ShardCommitter.StagingPrefix));
    }

    protected override IObjectStore NewStore() => new LocalObjectStore(Scratch.File("out-" + Guid.NewGuid().ToString("N")[..6]));

    protected override IObjectStore SameStore(IObjectStore store) => new LocalObjectStore(((LocalObjectStore)store).Root);

    [Fact]
    public async Task Subset_of_tables_and_duckdb_glob_over_the_output_folder()
    {
        var store = (LocalObjectStore)NewStore();
        var c = new ShardCommitter(store);
        for (int s = 0; s < 3; s++)
        {
            var t = Sample.Shard(s, 2);
            await c.CommitAsync(s, [t.Of<ExampleRow>(), t.Of<HeadStatRow>()]);
        }
        string glob = Duck.Q(Path.Combine(store.Root, "head_stats", "*.parquet"));
        var rows = Duck.Rows($"SELECT count(*), count(DISTINCT example_id), min(log_prob_increase), max(log_prob_increase) FROM read_parquet({glob})")[0];
        Assert.Equal(new object?[] { 3L * 2 * 12, 6L, 0.0, 11 * 0.25 + 1 }, rows);
        Assert.False(Directory.Exists(Path.Combine(store.Root, "layer_stats")));
        Assert.Equal(new[] { "_commits", "examples", "head_stats" }, Directory.GetDirectories(store.Root).Select(Path.GetFileName).Order());
    }
}

[Collection(AzuriteCollection.Name)]
public sealed class BlobCommitTests(AzuriteFixture azurite, Xunit.Abstractions.ITestOutputHelper output) : CommitContract
{
    private readonly Dictionary<IObjectStore, string> _containers = new();

    protected override IObjectStore NewStore()
    {
        var container = azurite.NewContainer();
        var s = new BlobObjectStore(azurite.ConnectionString, container.Name, "out/run", AzuriteFixture.Fast);
        lock (_containers) _containers[s] = container.Name;
        return s;
    }

    protected override IObjectStore SameStore(IObjectStore store)
    {
        string name;
        lock (_containers) name = _containers[store];
        return new BlobObjectStore(azurite.ConnectionString, name, "out/run", AzuriteFixture.Fast);
    }

    /// <summary>Counts the requests that read staged parts back, server-side copies, and the bytes uploaded.</summary>
    private sealed class Traffic : Azure.Core.Pipeline.HttpPipelineSynchronousPolicy
    {
        public int StagedReads, Copies;
        public long StagedBytesRead, BytesUploaded;

        public override void OnReceivedResponse(Azure.Core.HttpMessage message)
        {
            var r = message.Request;
            lock (this)
            {
                if (r.Method == Azure.Core.RequestMethod.Get && r.Uri.Path.Contains("/" + ShardCommitter.StagingPrefix, StringComparison.Ordinal))
                {
                    StagedReads++;
                    StagedBytesRead += message.Response.Headers.ContentLength ?? 0;
                }
                if (r.Headers.Contains("x-ms-copy-source")) Copies++;
                if (r.Method == Azure.Core.RequestMethod.Put && r.Content is not null && r.Content.TryComputeLength(out long n)) BytesUploaded += n;
            }
        }
    }

    [Fact]
    public async Task The_winning_attempt_publishes_from_its_own_copy_and_a_roll_forward_reads_each_staged_part_once()
    {
        var container = azurite.NewContainer();
        var traffic = new Traffic();
        var options = AzuriteFixture.Fast.ToClientOptions();
        options.AddPolicy(traffic, Azure.Core.HttpPipelinePosition.PerRetry);
        var store = new BlobObjectStore(new Azure.Storage.Blobs.BlobContainerClient(azurite.ConnectionString, container.Name, options), "out", AzuriteFixture.Fast);

        var r = await new ShardCommitter(store, new ShardCommitterOptions { ScratchDir = Scratch.Path }).CommitAsync(0, Sample.Shard(0, 200));
        long partBytes = r.Manifest.Parts.Sum(p => p.Bytes);
        output.WriteLine($"commit: {r.Manifest.Parts.Count} parts, {partBytes} bytes; uploaded {traffic.BytesUploaded} bytes, " +
                         $"{traffic.StagedReads} staged reads ({traffic.StagedBytesRead} bytes), {traffic.Copies} server-side copies");
        Assert.Equal(r.Manifest.Parts.Count, r.PartsMoved);
        Assert.Equal(0, traffic.StagedReads);
        Assert.Equal(0, traffic.Copies);
        Assert.InRange(traffic.BytesUploaded, 2 * partBytes, 2 * partBytes + 64 * 1024);   // staged + final + the manifest
        Assert.Empty(Directory.GetFiles(Scratch.Path, "*", SearchOption.AllDirectories));   // the scratch copies are gone

        var crashing = new ShardCommitter(store, new ShardCommitterOptions { ScratchDir = Scratch.Path })
        {
            StepHook = step => step == "committed" ? throw new SimulatedCrash(step) : Task.CompletedTask,
        };
        await Assert.ThrowsAsync<SimulatedCrash>(() => crashing.CommitAsync(1, Sample.Shard(1, 200)));
        var manifest = (await new ShardCommitter(store).ReadManifestAsync(1))!;
        Assert.Empty(Directory.GetFiles(Scratch.Path, "*", SearchOption.AllDirectories));
        traffic.StagedReads = 0;
        traffic.StagedBytesRead = 0;
        var repair = await new ShardCommitter(store).RepairAsync();
        output.WriteLine($"roll-forward: {repair.PartsRolledForward} parts, {traffic.StagedReads} staged reads ({traffic.StagedBytesRead} bytes), {traffic.Copies} server-side copies");
        Assert.Equal(manifest.Parts.Count, repair.PartsRolledForward);
        Assert.Equal(manifest.Parts.Count, traffic.StagedReads);
        Assert.Equal(manifest.Parts.Sum(p => p.Bytes), traffic.StagedBytesRead);
        Assert.Equal(0, traffic.Copies);
    }

    [Fact]
    public async Task Az_uri_with_connection_variable_commits_and_aggregates()
    {
        var container = azurite.NewContainer();
        var location = OutputLocation.Parse($"az://{container.Name}/experiments/e1");
        var env = new Dictionary<string, string> { [OutputLocation.ConnectionVariable] = azurite.ConnectionString };
        var store = location.OpenStore(env.GetValueOrDefault, AzuriteFixture.Fast);
        Assert.IsType<BlobObjectStore>(store);
        Assert.EndsWith($"/{container.Name}/experiments/e1", store.Location);

        var c = new ShardCommitter(store, new ShardCommitterOptions { ScratchDir = Scratch.Path });
        await c.CommitAsync(0, Sample.Shard(0, 2));
        await c.CommitAsync(1, Sample.Shard(1, 3));
        var blobs = container.GetBlobs(Azure.Storage.Blobs.Models.BlobTraits.None, Azure.Storage.Blobs.Models.BlobStates.None, "experiments/e1/head_stats/", default).Select(b => b.Name).ToList();
        Assert.Equal(2, blobs.Count);

        var heads = await Aggregates.HeadSummaryAsync(store, new AggregateOptions { ScratchDir = Scratch.Path });
        Assert.True(await store.ExistsAsync(Aggregates.HeadSummaryKey));
        var all = heads.Where(h => h.Outcome == "all").ToList();
        Assert.Equal(2 * Sample.Layers * Sample.Heads, all.Count);   // two tasks
        Assert.Equal(5, all.Where(h => h.Layer == 0 && h.Head == 0).Sum(h => h.NExamples));
    }
}
