using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using LlavaMech.Storage;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace LlavaMech.Pipeline.Tests;

/// <summary>A silo opens the object store of a location once and shares it (shards, preparation, finalization).</summary>
[Collection(PipelineCollection.Name)]
public class ObjectStorePerSiloTests(ClusterFixture fx, ITestOutputHelper output)
{
    [Fact]
    public async Task A_multi_shard_job_opens_its_output_store_at_most_once_per_silo()
    {
        using var tmp = new TempDir();
        var data = TestData.Build(tmp.Sub("data"), perTask: 8, copies: 1);
        string outDir = tmp.Sub("out");
        var opened = new ConcurrentQueue<string>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (i, l) =>
        {
            if (i.Meter.Name == StorageMetrics.MeterName && i.Name == StorageMetrics.StoresOpenedName) l.EnableMeasurementEvents(i);
        };
        listener.SetMeasurementEventCallback<long>((_, _, tags, _) =>
        {
            foreach (var t in tags)
                if (t.Key == "location" && t.Value is string l) opened.Enqueue(l);
        });
        listener.Start();

        var spec = new JobSpec("per-silo-" + Guid.NewGuid().ToString("N")[..8], TestData.TinyModel, data.ManifestPath, outDir, new JobOptions { ShardSize = 2 });
        var status = await fx.Client.RunAsync(spec, null);
        Assert.True(status.State == JobState.Completed, $"{status.State}: {status.Error}");
        int stores = opened.Count(l => l == outDir);
        output.WriteLine($"{status.ShardsTotal} shards on {fx.Cluster.Silos.Count} silos: the output store was opened {stores} time(s)");
        Assert.True(status.ShardsTotal >= 8, $"{status.ShardsTotal} shards");
        Assert.InRange(stores, 1, fx.Cluster.Silos.Count);

        foreach (var silo in fx.Cluster.Silos)
        {
            var cache = silo.ServiceProvider.GetRequiredService<ObjectStores>();
            Assert.Same(cache.Open(outDir), cache.Open(outDir));
        }
    }
}
