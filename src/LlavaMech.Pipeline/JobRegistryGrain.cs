namespace LlavaMech.Pipeline;

/// <summary>Persisted list of the cluster's jobs.</summary>
[GenerateSerializer]
public sealed class RegistryRecord
{
    [Id(0)] public Dictionary<string, JobEntry> Jobs { get; set; } = new(StringComparer.Ordinal);
}

/// <summary>See <see cref="IJobRegistryGrain"/>.</summary>
public sealed class JobRegistryGrain([PersistentState("registry", PipelineHosting.StorageName)] IPersistentState<RegistryRecord> record)
    : Grain, IJobRegistryGrain
{
    private const int KeepFinished = 200;

    public async Task RegisterAsync(string jobId, bool active)
    {
        var jobs = record.State.Jobs;
        bool known = jobs.TryGetValue(jobId, out var old);
        if (known && old!.Active == active) return;
        var submitted = known && !active ? old!.SubmittedAt : DateTimeOffset.UtcNow;
        jobs[jobId] = new JobEntry(jobId, submitted, active);
        foreach (var stale in jobs.Values.Where(j => !j.Active).OrderByDescending(j => j.SubmittedAt).Skip(KeepFinished).ToList())
            jobs.Remove(stale.JobId);
        await record.WriteStateAsync();
    }

    public Task<string[]> ActiveAsync() =>
        Task.FromResult(record.State.Jobs.Values.Where(j => j.Active).OrderBy(j => j.SubmittedAt).Select(j => j.JobId).ToArray());

    public Task<JobEntry[]> ListAsync() =>
        Task.FromResult(record.State.Jobs.Values.OrderByDescending(j => j.SubmittedAt).ToArray());
}
