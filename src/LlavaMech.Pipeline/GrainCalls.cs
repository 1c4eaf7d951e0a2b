using Orleans.Runtime;

namespace LlavaMech.Pipeline;

/// <summary>
/// Retries of grain calls across silo failures. A call to a grain whose silo just died fails with
/// <see cref="SiloUnavailableException"/> or <see cref="OrleansMessageRejectionException"/>, or hangs until the response
/// timeout (<see cref="TimeoutException"/>); the next call activates the grain on a surviving silo. Everything else
/// (argument errors, the grain's own exceptions) is not retried.
/// </summary>
public static class GrainCalls
{
    public static bool IsTransient(Exception e) => e is TimeoutException or SiloUnavailableException or OrleansMessageRejectionException
        or Orleans.Runtime.Messaging.ConnectionFailedException or GatewayTooBusyException or ClientNotAvailableException
        || (e is OrleansException && e.InnerException is { } inner && IsTransient(inner));

    /// <summary>Runs <paramref name="call"/> until it succeeds, fails with a non-transient error, or <paramref name="attempts"/> run out.</summary>
    public static async Task<T> RetryAsync<T>(Func<Task<T>> call, CancellationToken ct, int attempts = 8, TimeSpan? delay = null, Action<Exception>? onRetry = null)
    {
        var wait = delay ?? TimeSpan.FromMilliseconds(250);
        for (int i = 1; ; i++)
        {
            ct.ThrowIfCancellationRequested();
            try
            {
                return await call().ConfigureAwait(false);
            }
            catch (Exception e) when (IsTransient(e) && i < attempts && !ct.IsCancellationRequested)
            {
                onRetry?.Invoke(e);
                await Task.Delay(wait, ct).ConfigureAwait(false);
                wait = TimeSpan.FromMilliseconds(Math.Min(wait.TotalMilliseconds * 2, 5000));
            }
        }
    }

    public static Task RetryAsync(Func<Task> call, CancellationToken ct, int attempts = 8, TimeSpan? delay = null, Action<Exception>? onRetry = null) =>
        RetryAsync(async () => { await call().ConfigureAwait(false); return true; }, ct, attempts, delay, onRetry);
}
