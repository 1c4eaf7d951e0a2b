using System.Text;

namespace LlavaMech.Storage.Tests;

/// <summary>The <see cref="IObjectStore"/> contract, run against each implementation.</summary>
public abstract class ObjectStoreContract
{
    protected abstract IObjectStore NewStore();

    private static byte[] B(string s) => Encoding.UTF8.GetBytes(s);

    private static async Task<string?> Text(IObjectStore s, string key) =>
        await s.GetBytesAsync(key) is byte[] b ? Encoding.UTF8.GetString(b) : null;

    [Fact]
    public async Task Put_get_exists_list_delete()
    {
        var s = NewStore();
        await s.PutAsync("a/b/one.txt", B("1"));
        await s.PutAsync("a/two.txt", B("22"));
        await s.PutAsync("c.txt", B("333"));
        await s.PutAsync("a/two.txt", B("two"));   // replaces
        Assert.Equal("1", await Text(s, "a/b/one.txt"));
        Assert.Equal("two", await Text(s, "a/two.txt"));
        Assert.Null(await Text(s, "a/none.txt"));
        Assert.True(await s.ExistsAsync("c.txt"));
        Assert.False(await s.ExistsAsync("a/none.txt"));

        var all = await s.ListAllAsync("");
        Assert.Equal(new[] { "a/b/one.txt", "a/two.txt", "c.txt" }, all.Select(o => o.Key));
        Assert.Equal(new long[] { 1, 3, 3 }, all.Select(o => o.Size));
        Assert.Equal(new[] { "a/b/one.txt", "a/two.txt" }, (await s.ListAllAsync("a/")).Select(o => o.Key));
        Assert.Equal(new[] { "a/two.txt" }, (await s.ListAllAsync("a/t")).Select(o => o.Key));
        Assert.Empty(await s.ListAllAsync("zzz/"));

        Assert.True(await s.DeleteAsync("a/two.txt"));
        Assert.False(await s.DeleteAsync("a/two.txt"));
        Assert.Equal(new[] { "a/b/one.txt", "c.txt" }, (await s.ListAllAsync("")).Select(o => o.Key));
    }

    [Fact]
    public async Task Put_if_absent_has_exactly_one_winner_under_contention()
    {
        var s = NewStore();
        var results = await Task.WhenAll(Enumerable.Range(0, 12).Select(i => Task.Run(() => s.PutIfAbsentAsync("_commits/x.json", B("writer " + i)))));
        Assert.Equal(1, results.Count(r => r));
        int winner = Array.IndexOf(results, true);
        Assert.Equal("writer " + winner, await Text(s, "_commits/x.json"));
        Assert.False(await s.PutIfAbsentAsync("_commits/x.json", B("late")));
        Assert.Equal("writer " + winner, await Text(s, "_commits/x.json"));
        Assert.Equal(new[] { "_commits/x.json" }, (await s.ListAllAsync("")).Select(o => o.Key));   // no temp files left
    }

    [Fact]
    public async Task Conditional_writes_have_one_winner_per_version_and_a_stale_version_changes_nothing()
    {
        var s = NewStore();
        const string key = "grains/job/j-1.bin";
        Assert.Null(await s.GetVersionedAsync(key));
        Assert.False(await s.DeleteIfVersionAsync(key, "no-such-version"));
        string v1 = await s.PutIfVersionAsync(key, B("first"), null) ?? throw new Xunit.Sdk.XunitException("the first create failed");
        Assert.Null(await s.PutIfVersionAsync(key, B("second create"), null));   // exists already
        var read = await s.GetVersionedAsync(key);
        Assert.Equal(("first", v1), (Encoding.UTF8.GetString(read!.Content), read.Version));

        // Twelve writers that all read v1: exactly one replaces it, the others change nothing.
        var results = await Task.WhenAll(Enumerable.Range(0, 12).Select(i => Task.Run(() => s.PutIfVersionAsync(key, B("writer " + i), v1))));
        Assert.Equal(1, results.Count(r => r is not null));
        int winner = Array.FindIndex(results, r => r is not null);
        var after = await s.GetVersionedAsync(key);
        Assert.Equal(("writer " + winner, results[winner]), (Encoding.UTF8.GetString(after!.Content), after.Version));
        Assert.NotEqual(v1, after.Version);
        Assert.Null(await s.PutIfVersionAsync(key, B("stale"), v1));
        Assert.Equal("writer " + winner, await Text(s, key));

        Assert.False(await s.DeleteIfVersionAsync(key, v1));   // stale: kept
        Assert.True(await s.ExistsAsync(key));
        Assert.True(await s.DeleteIfVersionAsync(key, after.Version));
        Assert.False(await s.ExistsAsync(key));
        Assert.Empty(await s.ListAllAsync(""));   // no temp or lock files listed
    }

    [Fact]
    public async Task Move_is_idempotent_and_never_overwrites()
    {
        var s = NewStore();
        await s.PutAsync("_staging/p.parquet", B("data"));
        Assert.True(await s.MoveAsync("_staging/p.parquet", "t/p.parquet"));
        Assert.Equal("data", await Text(s, "t/p.parquet"));
        Assert.False(await s.ExistsAsync("_staging/p.parquet"));
        Assert.False(await s.MoveAsync("_staging/p.parquet", "t/p.parquet"));   // already moved

        // Interrupted earlier move (copy made, source still there): finishing it drops the source.
        await s.PutAsync("_staging/q.parquet", B("q"));
        await s.PutAsync("t/q.parquet", B("q"));
        Assert.False(await s.MoveAsync("_staging/q.parquet", "t/q.parquet"));
        Assert.False(await s.ExistsAsync("_staging/q.parquet"));
        Assert.Equal("q", await Text(s, "t/q.parquet"));

        await Assert.ThrowsAsync<FileNotFoundException>(() => s.MoveAsync("_staging/none", "t/none"));
    }

    [Fact]
    public async Task Concurrent_moves_of_one_object_succeed_once()
    {
        var s = NewStore();
        await s.PutAsync("_staging/c.parquet", B("c"));
        var r = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() => s.MoveAsync("_staging/c.parquet", "t/c.parquet"))));
        Assert.True(r.Count(x => x) <= 1);
        Assert.Equal("c", await Text(s, "t/c.parquet"));
        Assert.False(await s.ExistsAsync("_staging/c.parquet"));
    }

    [Theory]
    [InlineData("")]
    [InlineData("/abs")]
    [InlineData("a/../b")]
    [InlineData("a//b")]
    [InlineData("a\\b")]
    [InlineData("dir/")]
    public async Task Invalid_keys_are_refused(string key)
    {
        var s = NewStore();
        await Assert.ThrowsAsync<ArgumentException>(() => s.PutAsync(key, B("x")));
    }
}

public sealed class LocalObjectStoreTests : ObjectStoreContract, IDisposable
{
    private readonly TempDir _dir = new();

    protected override IObjectStore NewStore() => new LocalObjectStore(Path.Combine(_dir.Path, "store-" + Guid.NewGuid().ToString("N")[..6]));

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task Writes_are_hidden_until_complete_and_leave_no_temp_files()
    {
        var s = (LocalObjectStore)NewStore();
        await s.PutAsync("t/a.parquet", Encoding.UTF8.GetBytes("x"));
        Assert.Equal(new[] { "a.parquet" }, Directory.GetFiles(Path.Combine(s.Root, "t")).Select(Path.GetFileName));
        Assert.Equal(Path.Combine(s.Root, "t", "a.parquet"), s.LocalPath("t/a.parquet"));
        // A stray temp file (a crashed writer) is never listed and never matches *.parquet.
        File.WriteAllText(Path.Combine(s.Root, "t", ".b.parquet.0123.tmp"), "partial");
        Assert.Equal(new[] { "t/a.parquet" }, (await s.ListAllAsync("")).Select(o => o.Key));
    }

    [Fact]
    public async Task Deleting_the_last_file_prunes_empty_folders()
    {
        var s = (LocalObjectStore)NewStore();
        await s.PutAsync("_staging/shard-00001/abc/t.parquet", Encoding.UTF8.GetBytes("x"));
        await s.DeleteAsync("_staging/shard-00001/abc/t.parquet");
        Assert.False(Directory.Exists(Path.Combine(s.Root, "_staging")));
        Assert.True(Directory.Exists(s.Root));
    }
}

[Collection(AzuriteCollection.Name)]
public sealed class BlobObjectStoreTests(AzuriteFixture azurite) : ObjectStoreContract
{
    protected override IObjectStore NewStore() => new BlobObjectStore(azurite.NewContainer(), "runs/r1", AzuriteFixture.Fast);

    [Fact]
    public async Task Prefix_isolates_stores_in_one_container_and_location_names_it()
    {
        var container = azurite.NewContainer();
        var a = new BlobObjectStore(container, "runs/a");
        var b = new BlobObjectStore(container, "runs/b/");
        var root = new BlobObjectStore(container);
        await a.PutAsync("x.txt", Encoding.UTF8.GetBytes("a"));
        await b.PutAsync("x.txt", Encoding.UTF8.GetBytes("b"));
        Assert.Equal(new[] { "x.txt" }, (await a.ListAllAsync("")).Select(o => o.Key));
        Assert.Equal("b", Encoding.UTF8.GetString((await b.GetBytesAsync("x.txt"))!));
        Assert.Equal(new[] { "runs/a/x.txt", "runs/b/x.txt" }, (await root.ListAllAsync("")).Select(o => o.Key));
        Assert.Equal($"http://127.0.0.1:{azurite.Port}/{AzuriteFixture.AccountName}/{container.Name}/runs/a", a.Location);
        Assert.Null(a.LocalPath("x.txt"));
    }

    [Fact]
    public async Task Move_re_uploads_and_leaves_no_copy_record()
    {
        var container = azurite.NewContainer();
        var s = new BlobObjectStore(container, "p", AzuriteFixture.Fast);
        await s.PutAsync("_staging/a.parquet", Encoding.UTF8.GetBytes("payload"));
        Assert.True(await s.MoveAsync("_staging/a.parquet", "t/a.parquet"));
        Assert.False(await s.MoveAsync("_staging/a.parquet", "t/a.parquet"));
        Assert.Equal("payload", Encoding.UTF8.GetString((await s.GetBytesAsync("t/a.parquet"))!));
        Assert.Equal(new[] { "t/a.parquet" }, (await s.ListAllAsync("")).Select(o => o.Key));
        var p = (await container.GetBlobClient("p/t/a.parquet").GetPropertiesAsync()).Value;
        Assert.Null(p.CopySource);
        Assert.True(string.IsNullOrEmpty(p.CopyId));
    }

    [Fact]
    public async Task Move_accepts_a_destination_completed_by_an_earlier_server_side_copy()
    {
        // Outputs published by earlier versions hold copy targets; a finished one counts as moved.
        var container = azurite.NewContainer();
        var s = new BlobObjectStore(container, "p", AzuriteFixture.Fast);
        await s.PutAsync("_staging/b.parquet", Encoding.UTF8.GetBytes("payload-b"));
        var dst = container.GetBlobClient("p/t/b.parquet");
        var copy = await dst.StartCopyFromUriAsync(container.GetBlobClient("p/_staging/b.parquet").Uri);
        await copy.WaitForCompletionAsync();
        Assert.False(string.IsNullOrEmpty((await dst.GetPropertiesAsync()).Value.CopyId));
        Assert.False(await s.MoveAsync("_staging/b.parquet", "t/b.parquet"));
        Assert.Equal("payload-b", Encoding.UTF8.GetString((await s.GetBytesAsync("t/b.parquet"))!));
        Assert.False(await s.ExistsAsync("_staging/b.parquet"));
    }

    [Fact]
    public async Task Container_sas_connection_string_commits_a_shard()
    {
        var container = azurite.NewContainer();
        var sas = container.GenerateSasUri(Azure.Storage.Sas.BlobContainerSasPermissions.All, DateTimeOffset.UtcNow.AddHours(1));
        string token = sas.Query.TrimStart('?');
        string conn = $"BlobEndpoint=http://127.0.0.1:{azurite.Port}/{AzuriteFixture.AccountName};SharedAccessSignature={token}";
        var store = new BlobObjectStore(conn, container.Name, "sas", AzuriteFixture.Fast);
        Assert.DoesNotContain("sig=", store.Location);

        using var scratch = new TempDir();
        var r = await new ShardCommitter(store, new ShardCommitterOptions { ScratchDir = scratch.Path }).CommitAsync(0, Sample.Shard(0, 2));
        Assert.True(r.Won);
        var keys = (await store.ListAllAsync("")).Select(o => o.Key).ToList();
        Assert.Equal(StatisticCatalog.ShardTables.Count + 1, keys.Count);   // the parts + the manifest, nothing staged
        Assert.Contains(ShardCommitter.ManifestKey(0), keys);
    }

    [Fact]
    public async Task A_missing_container_reads_as_empty_and_is_created_on_first_write()
    {
        var s = new BlobObjectStore(azurite.ConnectionString, "new" + Guid.NewGuid().ToString("N")[..10], null, AzuriteFixture.Fast);
        Assert.Empty(await s.ListAllAsync(""));
        Assert.False(await s.ExistsAsync("a"));
        Assert.Null(await s.GetBytesAsync("a"));
        Assert.True(await s.PutIfAbsentAsync("a", Encoding.UTF8.GetBytes("1")));
        Assert.Single(await s.ListAllAsync(""));
    }
}
