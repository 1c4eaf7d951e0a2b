using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Configuration;
using Orleans.TestingHost;

namespace LlavaMech.Pipeline.Tests;

/// <summary>
/// Three in-process silos, each with the pipeline (one cpu runner thread, its own warm tiny model), job state in a
/// folder all of them see (so a job survives its grain's silo), and short response timeouts so calls to a killed
/// silo fail over quickly.
/// </summary>
public sealed class ClusterFixture : IAsyncLifetime
{
    public static readonly TimeSpan ResponseTimeout = TimeSpan.FromSeconds(5);

    private readonly TempDir _state = new("llavamech-state-");

    public InProcessTestCluster Cluster { get; private set; } = null!;
    public PipelineClient Client { get; private set; } = null!;
    public TimeSpan DeployTime { get; private set; }

    public async Task InitializeAsync()
    {
        Reference.UseOneTorchThread();
        var clock = Stopwatch.StartNew();
        var builder = new InProcessTestClusterBuilder(3);
        string state = _state.Path;
        builder.ConfigureSilo((_, silo) =>
        {
            silo.AddLlavaMechPipeline(new PipelineSiloOptions { StateStore = state, PollInterval = TimeSpan.FromMilliseconds(200) });
            silo.Configure<SiloMessagingOptions>(o => o.ResponseTimeout = ResponseTimeout);
        });
        builder.ConfigureClient(client => client.Configure<ClientMessagingOptions>(o => o.ResponseTimeout = ResponseTimeout));
        Cluster = builder.Build();
        await Cluster.DeployAsync();
        Client = new PipelineClient(Cluster.Client) { PollInterval = TimeSpan.FromMilliseconds(250) };
        DeployTime = clock.Elapsed;
    }

    public static PipelineWorker WorkerOf(InProcessSiloHandle silo) => silo.ServiceProvider.GetRequiredService<PipelineWorker>();

    public async Task DisposeAsync()
    {
        try { await Cluster.StopAllSilosAsync(); } catch (Exception) { }
        await Cluster.DisposeAsync();
        _state.Dispose();
    }
}
