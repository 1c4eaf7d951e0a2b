using LlavaMech.Storage;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Serialization;
using Orleans.Storage;

namespace LlavaMech.Pipeline.Tests;

/// <summary>
/// Grain state writes are conditional on the ETag in one step: of activations that read the same state and write
/// concurrently exactly one wins, the others get <see cref="InconsistentStateException"/> and change nothing (a
/// folder and a blob container through Azurite).
/// </summary>
[Collection(PipelineCollection.Name)]
public class GrainStateConcurrencyTests(AzuriteFixture azurite)
{
    private const int Writers = 8;

    private static readonly Serializer Serializer = new ServiceCollection().AddSerializer().BuildServiceProvider().GetRequiredService<Serializer>();

    [Fact]
    public async Task Stale_writers_lose_with_InconsistentStateException_in_a_folder()
    {
        using var tmp = new TempDir("llavamech-grains-");
        await StaleWritersLoseAsync(new LocalObjectStore(tmp.Path));
    }

    [Fact]
    public async Task Stale_writers_lose_with_InconsistentStateException_in_a_blob_container()
    {
        await StaleWritersLoseAsync(new BlobObjectStore(azurite.ConnectionString, "grains", "t-" + Guid.NewGuid().ToString("N")[..8]));
    }

    private static async Task StaleWritersLoseAsync(IObjectStore store)
    {
        var storage = new ObjectStoreGrainStorage(store, Serializer);
        var id = GrainId.Create("job", "j-" + Guid.NewGuid().ToString("N")[..8]);
        await storage.WriteStateAsync("job", id, new GrainState<string> { State = "v0" });

        // Several activations read the same state (same ETag), then all write at once.
        var readers = Enumerable.Range(0, Writers).Select(_ => new GrainState<string>()).ToArray();
        foreach (var r in readers) await storage.ReadStateAsync("job", id, r);
        Assert.Single(readers.Select(r => r.ETag).Distinct());
        Assert.All(readers, r => Assert.Equal("v0", r.State));
        var outcomes = await Task.WhenAll(readers.Select((r, i) => Task.Run(async () =>
        {
            r.State = "writer " + i;
            try
            {
                await storage.WriteStateAsync("job", id, r);
                return null;
            }
            catch (Exception e)
            {
                return e;
            }
        })));
        Assert.Equal(1, outcomes.Count(o => o is null));
        Assert.All(outcomes.Where(o => o is not null), e => Assert.IsType<InconsistentStateException>(e));
        int winner = Array.FindIndex(outcomes, o => o is null);

        var now = new GrainState<string>();
        await storage.ReadStateAsync("job", id, now);
        Assert.Equal("writer " + winner, now.State);
        Assert.Equal(readers[winner].ETag, now.ETag);

        // A loser's clear and a write from an activation that read nothing fail too; the winner goes on.
        int loser = (winner + 1) % Writers;
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.ClearStateAsync("job", id, readers[loser]));
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync("job", id, new GrainState<string> { State = "blind" }));
        readers[winner].State = "again";
        await storage.WriteStateAsync("job", id, readers[winner]);
        await storage.ReadStateAsync("job", id, now);
        Assert.Equal("again", now.State);
        await storage.ClearStateAsync("job", id, readers[winner]);
        await storage.ReadStateAsync("job", id, now);
        Assert.False(now.RecordExists);
        Assert.Empty(await store.ListAllAsync(""));
    }
}
