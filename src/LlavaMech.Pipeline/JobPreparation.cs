using LlavaMech.Storage;
using Microsoft.Extensions.Logging;

namespace LlavaMech.Pipeline;

/// <summary>
/// A job's preparation (<see cref="JobPlan.PrepareAsync"/>: checkpoint validation, manifest, committed shards), run on
/// the thread pool, away from the job grain's turns: it may take seconds, or minutes while the output storage is
/// unreachable. It touches no grain state; the grain reads <see cref="Plan"/> and <see cref="Notice"/> in its own
/// turns, and <paramref name="finished"/> (a call on the grain itself) brings it back in once the plan is there.
/// </summary>
public sealed class JobPreparation
{
    private volatile string? _notice;

    private JobPreparation(JobSpec spec, ObjectStores? stores, Func<Task> finished, ILogger log, CancellationToken ct)
    {
        Plan = Task.Run(() => PrepareWithRetriesAsync(spec, n => _notice = n, ct, stores), ct);
        _ = Task.Run(() => NotifyAsync(spec.JobId, Plan, finished, log, ct), CancellationToken.None);
    }

    /// <summary>
    /// Starts preparing <paramref name="spec"/>; <paramref name="finished"/> runs once the plan (or its failure) is
    /// there, unless <paramref name="ct"/> was cancelled meanwhile.
    /// </summary>
    public static JobPreparation Start(JobSpec spec, ObjectStores? stores, Func<Task> finished, ILogger log, CancellationToken ct) => new(spec, stores, finished, log, ct);

    /// <summary>The plan; faults with <see cref="JobPreparationException"/> naming why the job cannot start.</summary>
    public Task<JobPlan> Plan { get; }

    /// <summary>What the preparation waits for (the output storage, unreachable), or null.</summary>
    public string? Notice => _notice;

    private static async Task NotifyAsync(string jobId, Task plan, Func<Task> finished, ILogger log, CancellationToken ct)
    {
        await Task.WhenAny(plan).ConfigureAwait(false);   // its outcome, a plan or a failure, is the grain's to read from Plan
        if (ct.IsCancellationRequested) return;
        try
        {
            await finished().ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The grain is stopping or moved: its next call takes the plan in (after a move it prepares afresh).
            log.LogWarning("job {Job}: the finished preparation could not be handed to the job grain; its next call takes it in: {Error}", jobId, e.Message);
        }
    }

    /// <summary>
    /// <see cref="JobPlan.PrepareAsync"/>, retried with the storage outage policy while the output storage is
    /// unreachable (the job stays preparing, with a notice); after the storage wait it fails with the endpoint named.
    /// </summary>
    public static async Task<JobPlan> PrepareWithRetriesAsync(JobSpec spec, Action<string?> notice, CancellationToken ct, ObjectStores? stores = null)
    {
        // The wait runs from the start of the first attempt that failed; every later attempt is cut off at its end, so
        // an attempt's own request retries cannot carry the total past the asked time.
        DateTimeOffset? since = null;
        int tries = 0;
        StorageException? last = null;
        var waitFor = TimeSpan.FromSeconds(spec.Options.StorageWaitSeconds);
        while (true)
        {
            var started = DateTimeOffset.UtcNow;
            using var attempt = CancellationTokenSource.CreateLinkedTokenSource(ct);
            if (since is { } s0) attempt.CancelAfter(Max(TimeSpan.Zero, s0 + waitFor - started));
            try
            {
                var plan = await JobPlan.PrepareAsync(spec, stores, attempt.Token).ConfigureAwait(false);
                notice(null);
                return plan;
            }
            catch (Exception e) when (!ct.IsCancellationRequested && (StorageOutage.Find(e) is not null || (e is OperationCanceledException && attempt.IsCancellationRequested)))
            {
                var now = DateTimeOffset.UtcNow;
                since ??= started;
                tries++;
                var waited = now - since.Value;
                var storage = StorageOutage.Find(e);
                last = storage ?? last;
                if (waited >= waitFor || storage is null)
                    throw new JobPreparationException(StorageOutage.GiveUpMessage(last?.Endpoint ?? "of the job", waited, tries, spec.Options.StorageWaitSeconds,
                        storage?.Message ?? $"the storage wait ran out during try {tries}{(last is null ? "" : $" (before: {last.Message})")}"), (Exception?)last ?? e);
                var pause = StorageOutage.Pause(tries);
                var remaining = waitFor - waited;
                if (remaining < pause) pause = remaining;
                notice(StorageOutage.PausedNotice(storage.Endpoint, waited, tries, pause, spec.Options.StorageWaitSeconds));
                await Task.Delay(pause, ct).ConfigureAwait(false);
            }
        }
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;
}
