using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;

namespace LlavaMech.Storage;

/// <summary>One part file of a committed shard, as listed in its commit manifest.</summary>
/// <param name="Table">The table (<see cref="TableNames"/>).</param>
/// <param name="Path">Final key, e.g. "head_stats/part-00003-&lt;attempt&gt;.parquet": what readers glob.</param>
/// <param name="StagingPath">Where the attempt wrote it first, e.g. "_staging/shard-00003/&lt;attempt&gt;/head_stats.parquet".</param>
/// <param name="Rows">Rows in the file.</param>
/// <param name="Bytes">File size in bytes.</param>
public sealed record CommitPart(string Table, string Path, string StagingPath, long Rows, long Bytes);

/// <summary>The commit record of one shard: <c>_commits/shard-&lt;shard:00000&gt;.json</c>. Its existence is the commit.</summary>
public sealed record CommitManifest(
    string Format,
    int Shard,
    string RunId,
    string ModelFingerprint,
    string AttemptId,
    DateTimeOffset CommittedAt,
    string Host,
    IReadOnlyList<CommitPart> Parts)
{
    public const string CurrentFormat = "llavamech-shard-commit/1";

    public byte[] ToJson() => JsonSerializer.SerializeToUtf8Bytes(this, ManifestJson.Default.CommitManifest);

    public static CommitManifest Parse(ReadOnlySpan<byte> json, string where)
    {
        CommitManifest? m;
        try { m = JsonSerializer.Deserialize(json, ManifestJson.Default.CommitManifest); }
        catch (JsonException e) { throw new InvalidDataException($"commit manifest {where} is not valid JSON: {e.Message}", e); }
        if (m is null || m.Parts is null || string.IsNullOrEmpty(m.AttemptId))
            throw new InvalidDataException($"commit manifest {where} lacks attempt_id or parts");
        if (m.Format != CurrentFormat)
            throw new InvalidDataException($"commit manifest {where} has format '{m.Format}', expected '{CurrentFormat}'");
        return m;
    }

    public long RowsOf(string table) => Parts.Where(p => p.Table == table).Sum(p => p.Rows);
}

/// <summary>Source-generated (trimming- and AOT-safe) JSON for manifests: snake_case names, indented.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true)]
[JsonSerializable(typeof(CommitManifest))]
internal sealed partial class ManifestJson : JsonSerializerContext;

public enum CommitOutcome
{
    /// <summary>This attempt won: its manifest is the shard's commit and its parts are in place.</summary>
    Committed,

    /// <summary>The shard was committed already (by an earlier run or a concurrent committer); this attempt's parts were deleted.</summary>
    AlreadyCommitted,
}

/// <param name="AttemptId">This call's attempt id; null when the shard was found committed before anything was written.</param>
/// <param name="Manifest">The shard's commit (the winner's when <see cref="Outcome"/> is AlreadyCommitted).</param>
/// <param name="PartsMoved">Parts moved from staging to their final names by this call (a roll-forward of an interrupted commit counts too).</param>
public sealed record CommitResult(int Shard, CommitOutcome Outcome, string? AttemptId, CommitManifest Manifest, int PartsMoved)
{
    public bool Won => Outcome == CommitOutcome.Committed;
}

/// <summary>What <see cref="ShardCommitter.RepairAsync"/> found and did.</summary>
/// <param name="CommittedShards">Shards with a commit manifest.</param>
/// <param name="PartsRolledForward">Committed parts moved from staging to their final names (commits interrupted after the manifest).</param>
/// <param name="StagingDeleted">Staging files deleted: of attempts that lost (or crashed before committing) a shard that is now committed, and with a staleness limit, of uncommitted shards.</param>
/// <param name="MissingParts">Final keys of committed parts that are gone along with their staging copies (data loss: redo those shards by hand).</param>
/// <param name="UnexpectedParts">Part files under table folders that no commit lists (never produced by this protocol; visible to globbing readers).</param>
public sealed record RepairReport(
    int CommittedShards,
    int PartsRolledForward,
    int StagingDeleted,
    IReadOnlyList<string> MissingParts,
    IReadOnlyList<string> UnexpectedParts);

/// <summary>Settings of a <see cref="ShardCommitter"/>.</summary>
public sealed record ShardCommitterOptions
{
    /// <summary>Folder for Parquet files on their way to a remote store (default: the system temp folder).</summary>
    public string? ScratchDir { get; init; }

    /// <summary>Concurrent requests when reading many manifests.</summary>
    public int ReadParallelism { get; init; } = 16;
}

/// <summary>
/// Commits one shard's tables atomically and exactly once. Protocol (details and crash cases in TABLES.md):
/// <list type="number">
/// <item>Stage: write each table as one Parquet file under <c>_staging/shard-&lt;s&gt;/&lt;attempt&gt;/&lt;table&gt;.parquet</c>
/// (invisible to readers of <c>&lt;table&gt;/*.parquet</c>).</item>
/// <item>Commit: put-if-absent <c>_commits/shard-&lt;s&gt;.json</c> listing the parts. The first attempt to create it wins; a loser
/// deletes its staging files and reports <see cref="CommitOutcome.AlreadyCommitted"/>.</item>
/// <item>Publish: move each staged part to <c>&lt;table&gt;/part-&lt;s&gt;-&lt;attempt&gt;.parquet</c> (the winner uploads its
/// scratch copy there with put-if-absent and deletes the staged one; no server-side copy). Anyone who finds a manifest
/// whose parts are still staged finishes the moves (roll-forward), so a crash after the commit is completed by the next
/// committer of that shard or by <see cref="RepairAsync"/>.</item>
/// </list>
/// Only the winning attempt's files ever get final names, so readers never see two copies of a shard's rows.
/// </summary>
public sealed partial class ShardCommitter
{
    public const string CommitsPrefix = "_commits/";
    public const string StagingPrefix = "_staging/";

    private readonly IObjectStore _store;
    private readonly ShardCommitterOptions _options;

    public ShardCommitter(IObjectStore store, ShardCommitterOptions? options = null)
    {
        _store = store ?? throw new ArgumentNullException(nameof(store));
        _options = options ?? new ShardCommitterOptions();
    }

    public IObjectStore Store => _store;

    /// <summary>Test hook: awaited after each protocol step ("staged", "committed", "published:&lt;table&gt;"); throwing from it simulates a crash there.</summary>
    internal Func<string, Task>? StepHook { get; set; }

    public static string ManifestKey(int shard) => $"{CommitsPrefix}shard-{shard:D5}.json";

    public static string PartKey(string table, int shard, string attemptId) => $"{table}/part-{shard:D5}-{attemptId}.parquet";

    public static string StagingKey(int shard, string attemptId, string table) => $"{StagingPrefix}shard-{shard:D5}/{attemptId}/{table}.parquet";

    /// <summary>True when the shard has a commit manifest (its parts are final, or will be after a roll-forward).</summary>
    public Task<bool> IsCommittedAsync(int shard, CancellationToken ct = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(shard);
        return _store.ExistsAsync(ManifestKey(shard), ct);
    }

    /// <summary>The shard's commit manifest, or null when not committed.</summary>
    public async Task<CommitManifest?> ReadManifestAsync(int shard, CancellationToken ct = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(shard);
        var bytes = await _store.GetBytesAsync(ManifestKey(shard), ct).ConfigureAwait(false);
        return bytes is null ? null : CommitManifest.Parse(bytes, $"{_store.Location}/{ManifestKey(shard)}");
    }

    /// <summary>The committed shards in increasing order (one listing, no reads): what a resumed run skips.</summary>
    public async Task<IReadOnlyList<int>> CommittedShardsAsync(CancellationToken ct = default)
    {
        var shards = new List<int>();
        await foreach (var o in _store.ListAsync(CommitsPrefix, ct).ConfigureAwait(false))
            if (ParseManifestKey(o.Key) is int s)
                shards.Add(s);
        shards.Sort();
        return shards;
    }

    /// <summary>Every commit manifest, ordered by shard.</summary>
    public async Task<IReadOnlyList<CommitManifest>> CommittedManifestsAsync(CancellationToken ct = default)
    {
        var shards = await CommittedShardsAsync(ct).ConfigureAwait(false);
        var result = new CommitManifest?[shards.Count];
        await Parallel.ForEachAsync(Enumerable.Range(0, shards.Count),
            new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, _options.ReadParallelism), CancellationToken = ct },
            async (i, token) => result[i] = await ReadManifestAsync(shards[i], token).ConfigureAwait(false)).ConfigureAwait(false);
        return result.Where(m => m is not null).Select(m => m!).ToList();
    }

    /// <summary>Final keys of the committed parts of <paramref name="table"/>, by shard: the exact set a strict reader should read.</summary>
    public async Task<IReadOnlyList<string>> CommittedPartsAsync(string table, CancellationToken ct = default)
    {
        var manifests = await CommittedManifestsAsync(ct).ConfigureAwait(false);
        return manifests.SelectMany(m => m.Parts.Where(p => p.Table == table).Select(p => p.Path)).ToList();
    }

    /// <inheritdoc cref="CommitAsync(int, IEnumerable{TableBatch}, CancellationToken)"/>
    public Task<CommitResult> CommitAsync(int shard, ShardTables tables, CancellationToken ct = default) =>
        CommitAsync(shard, tables.All, ct);

    /// <summary>
    /// Writes and commits one shard: one Parquet part per batch (empty batches included, as files without rows).
    /// Returns <see cref="CommitOutcome.AlreadyCommitted"/> without writing when the shard is committed (after
    /// finishing that commit's publication if it was interrupted), or when a concurrent committer wins the race.
    /// Throws <see cref="InvalidOperationException"/> when the shard is committed by another model fingerprint.
    /// </summary>
    public async Task<CommitResult> CommitAsync(int shard, IEnumerable<TableBatch> batches, CancellationToken ct = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(shard);
        var list = Validate(batches);
        string fingerprint = list[0].ModelFingerprint;

        var existing = await ReadManifestAsync(shard, ct).ConfigureAwait(false);
        if (existing is not null)
            return await AlreadyCommittedAsync(existing, null, fingerprint, ct).ConfigureAwait(false);

        string attempt = Guid.NewGuid().ToString("N");
        var localCopies = new Dictionary<string, string>(StringComparer.Ordinal);   // staging key -> this attempt's scratch file
        try
        {
            return await StageAndCommitAsync(shard, attempt, list, localCopies, ct).ConfigureAwait(false);
        }
        finally
        {
            foreach (var f in localCopies.Values)
                try { File.Delete(f); } catch (IOException) { }
        }
    }

    private async Task<CommitResult> StageAndCommitAsync(int shard, string attempt, List<TableBatch> list, Dictionary<string, string> localCopies,
        CancellationToken ct)
    {
        string fingerprint = list[0].ModelFingerprint;
        var parts = new List<CommitPart>(list.Count);
        try
        {
            foreach (var b in list)
                parts.Add(await StageAsync(shard, attempt, b, localCopies, ct).ConfigureAwait(false));
        }
        catch
        {
            await DeleteQuietlyAsync(list.Select(b => StagingKey(shard, attempt, b.Table))).ConfigureAwait(false);
            throw;
        }
        await Step("staged").ConfigureAwait(false);

        // Someone may have committed while we staged: then don't even try.
        var existing = await ReadManifestAsync(shard, ct).ConfigureAwait(false);
        if (existing is not null)
        {
            await DeleteQuietlyAsync(parts.Select(p => p.StagingPath)).ConfigureAwait(false);
            return await AlreadyCommittedAsync(existing, attempt, fingerprint, ct).ConfigureAwait(false);
        }

        var manifest = new CommitManifest(CommitManifest.CurrentFormat, shard, list[0].RunId, fingerprint, attempt,
            DateTimeOffset.UtcNow, Environment.MachineName, parts);
        bool won = await _store.PutIfAbsentAsync(ManifestKey(shard), manifest.ToJson(), ct).ConfigureAwait(false);
        if (!won)
        {
            existing = await ReadManifestAsync(shard, ct).ConfigureAwait(false)
                       ?? throw new StorageException($"commit manifest of shard {shard} exists but cannot be read", _store.Location);
            // A retried upload can answer "exists" for our own earlier, successful try: the attempt id tells.
            won = existing.AttemptId == attempt;
            if (!won)
            {
                await DeleteQuietlyAsync(parts.Select(p => p.StagingPath)).ConfigureAwait(false);
                return await AlreadyCommittedAsync(existing, attempt, fingerprint, ct).ConfigureAwait(false);
            }
            manifest = existing;
        }
        await Step("committed").ConfigureAwait(false);

        int moved = await PublishAsync(manifest, ct, localCopies).ConfigureAwait(false);
        return new CommitResult(shard, CommitOutcome.Committed, attempt, manifest, moved);
    }

    private static List<TableBatch> Validate(IEnumerable<TableBatch> batches)
    {
        var list = (batches ?? throw new ArgumentNullException(nameof(batches))).ToList();
        if (list.Count == 0) throw new ArgumentException("a shard commit needs at least one table batch", nameof(batches));
        var dup = list.GroupBy(b => b.Table).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new ArgumentException($"table '{dup.Key}' appears twice in one shard commit", nameof(batches));
        foreach (var b in list)
        {
            if (!TableNames.IsValidName(b.Table) || TableNames.SummaryTables.Contains(b.Table))
                throw new ArgumentException($"'{b.Table}' cannot be a shard table (a name of lower-case letters, digits and '_', not a summary table)", nameof(batches));
            if (b.RunId != list[0].RunId || b.ModelFingerprint != list[0].ModelFingerprint)
                throw new ArgumentException("all batches of a shard must share run_id and model_fingerprint", nameof(batches));
        }
        return list;
    }

    private async Task<CommitResult> AlreadyCommittedAsync(CommitManifest existing, string? attempt, string fingerprint, CancellationToken ct)
    {
        if (existing.ModelFingerprint != fingerprint)
            throw new InvalidOperationException(
                $"shard {existing.Shard} in {_store.Location} is committed for model fingerprint '{existing.ModelFingerprint}', not '{fingerprint}': write each model to its own output location");
        int moved = await PublishAsync(existing, ct).ConfigureAwait(false);   // finish an interrupted commit
        return new CommitResult(existing.Shard, CommitOutcome.AlreadyCommitted, attempt, existing, moved);
    }

    /// <summary>
    /// Writes one table's part under its staging key. A remote store gets it uploaded from a scratch file, which is
    /// kept (in <paramref name="localCopies"/>) so that publishing uploads it again instead of reading the staged part back.
    /// </summary>
    private async Task<CommitPart> StageAsync(int shard, string attempt, TableBatch batch, Dictionary<string, string> localCopies, CancellationToken ct)
    {
        string key = StagingKey(shard, attempt, batch.Table);
        long bytes;
        string? local = _store.LocalPath(key);
        if (local is not null)
        {
            // The staging name is private to this attempt: write in place.
            Directory.CreateDirectory(Path.GetDirectoryName(local)!);
            await batch.WriteParquetAsync(local, ct).ConfigureAwait(false);
            bytes = new FileInfo(local).Length;
        }
        else
        {
            string dir = _options.ScratchDir ?? Path.Combine(Path.GetTempPath(), "llavamech-storage");
            Directory.CreateDirectory(dir);
            string tmp = Path.Combine(dir, $"{attempt}-{batch.Table}.parquet");
            localCopies[key] = tmp;   // deleted by CommitAsync, whatever happens
            await batch.WriteParquetAsync(tmp, ct).ConfigureAwait(false);
            bytes = new FileInfo(tmp).Length;
            await _store.PutFileAsync(key, tmp, ct).ConfigureAwait(false);
        }
        return new CommitPart(batch.Table, PartKey(batch.Table, shard, attempt), key, batch.RowCount, bytes);
    }

    /// <summary>
    /// Moves every staged part of a committed shard to its final name (idempotent); returns how many this call moved.
    /// A part whose bytes this process still has in a scratch file (<paramref name="localCopies"/>, the winning
    /// attempt's own) is uploaded from it with put-if-absent, then its staged copy is deleted: the end state of a move,
    /// without reading the staged part back from a remote store.
    /// </summary>
    private async Task<int> PublishAsync(CommitManifest manifest, CancellationToken ct, IReadOnlyDictionary<string, string>? localCopies = null)
    {
        int moved = 0;
        foreach (var p in manifest.Parts)
        {
            try
            {
                bool done;
                if (localCopies is not null && localCopies.TryGetValue(p.StagingPath, out var file))
                {
                    await using (var fs = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: true))
                        done = await _store.PutIfAbsentAsync(p.Path, fs, ct).ConfigureAwait(false);
                    await _store.DeleteAsync(p.StagingPath, ct).ConfigureAwait(false);
                }
                else
                {
                    done = await _store.MoveAsync(p.StagingPath, p.Path, ct).ConfigureAwait(false);
                }
                if (done) moved++;
            }
            catch (FileNotFoundException)
            {
                throw new CommitIntegrityException(
                    $"shard {manifest.Shard} is committed (attempt {manifest.AttemptId}) but its part '{p.Path}' is missing and so is its staging copy '{p.StagingPath}'",
                    _store.Location);
            }
            await Step("published:" + p.Table).ConfigureAwait(false);
        }
        return moved;
    }

    /// <summary>
    /// Brings the output to a clean state; safe to run while committers are active. Finishes the publication of every
    /// committed shard whose parts are still staged, and deletes staging files of attempts that can no longer win (the
    /// shard is committed by another attempt). With <paramref name="deleteUncommittedStagingOlderThan"/>, also deletes
    /// staging files of uncommitted shards older than that: use it only when no committer that old can still be running.
    /// </summary>
    public async Task<RepairReport> RepairAsync(TimeSpan? deleteUncommittedStagingOlderThan = null, CancellationToken ct = default)
    {
        var manifests = (await CommittedManifestsAsync(ct).ConfigureAwait(false)).ToDictionary(m => m.Shard);
        var staging = await _store.ListAllAsync(StagingPrefix, ct).ConfigureAwait(false);
        var stagingKeys = staging.Select(o => o.Key).ToHashSet(StringComparer.Ordinal);

        var tables = manifests.Values.SelectMany(m => m.Parts.Select(p => p.Table)).Distinct();
        var finals = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in tables)
            await foreach (var o in _store.ListAsync(t + "/", ct).ConfigureAwait(false))
                finals.Add(o.Key);

        int rolled = 0, deleted = 0;
        var missing = new List<string>();
        foreach (var m in manifests.Values.OrderBy(m => m.Shard))
            foreach (var p in m.Parts)
            {
                bool final = finals.Contains(p.Path), staged = stagingKeys.Contains(p.StagingPath);
                if (!final && !staged)
                {
                    if (!await _store.ExistsAsync(p.Path, ct).ConfigureAwait(false)) missing.Add(p.Path);
                    continue;
                }
                if (!staged) continue;
                try
                {
                    if (await _store.MoveAsync(p.StagingPath, p.Path, ct).ConfigureAwait(false)) rolled++;
                }
                catch (FileNotFoundException) { missing.Add(p.Path); }
            }

        var cutoff = deleteUncommittedStagingOlderThan is TimeSpan age ? DateTimeOffset.UtcNow - age : (DateTimeOffset?)null;
        foreach (var o in staging)
        {
            if (ParseStagingKey(o.Key) is not (int shard, string attempt)) continue;
            bool drop = manifests.TryGetValue(shard, out var m)
                ? m.AttemptId != attempt
                : cutoff is not null && o.LastModified < cutoff;
            if (drop && await _store.DeleteAsync(o.Key, ct).ConfigureAwait(false))
                deleted++;
        }

        var expected = manifests.Values.SelectMany(m => m.Parts.Select(p => p.Path)).ToHashSet(StringComparer.Ordinal);
        var unexpected = finals.Where(k => PartFileRegex().IsMatch(k) && !expected.Contains(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        return new RepairReport(manifests.Count, rolled, deleted, missing, unexpected);
    }

    private async Task DeleteQuietlyAsync(IEnumerable<string> keys)
    {
        foreach (var k in keys)
        {
            try { await _store.DeleteAsync(k, CancellationToken.None).ConfigureAwait(false); }
            catch (StorageException) { }   // left for RepairAsync: staging is invisible to readers
        }
    }

    private Task Step(string name) => StepHook?.Invoke(name) ?? Task.CompletedTask;

    internal static int? ParseManifestKey(string key)
    {
        var m = ManifestRegex().Match(key);
        return m.Success && int.TryParse(m.Groups[1].Value, out int s) ? s : null;
    }

    internal static (int Shard, string Attempt)? ParseStagingKey(string key)
    {
        var m = StagingRegex().Match(key);
        return m.Success && int.TryParse(m.Groups[1].Value, out int s) ? (s, m.Groups[2].Value) : null;
    }

    [GeneratedRegex(@"^_commits/shard-(\d+)\.json$")]
    private static partial Regex ManifestRegex();

    [GeneratedRegex(@"^_staging/shard-(\d+)/([0-9a-f]+)/[^/]+$")]
    private static partial Regex StagingRegex();

    [GeneratedRegex(@"^[^/]+/part-\d+-[0-9a-f]+\.parquet$")]
    private static partial Regex PartFileRegex();
}
