using LlavaMech.Datasets.Manifest;
using static LlavaMech.Pipeline.LeaseTable;

namespace LlavaMech.Pipeline.Tests;

/// <summary>The job's lease state machine on its own: no Orleans, no clock, no storage (every call takes the time).</summary>
public class LeaseTableTests
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(10);

    /// <summary><paramref name="sizes"/>[i] examples in shard i.</summary>
    private static LeaseTable Table(int[] sizes, int maxAttempts = 3, int[]? committed = null) =>
        new(sizes.Select((n, i) => new PlannedShard(i,
                Enumerable.Range(0, n).Select(k => new ManifestExample($"s{i}e{k}", "vqa", null, null, "p", null, null, "{}", k + 1) { RawLine = "{}" }).ToArray(), [])).ToList(),
            (committed ?? []).ToHashSet(), maxAttempts, Lease);

    [Fact]
    public void Grants_pending_shards_in_order_with_the_lease_time_then_none()
    {
        var t = Table([2, 3, 4], committed: [1]);
        var a = t.LeaseShard("w1", T0)!;
        var b = t.LeaseShard("w2", T0 + TimeSpan.FromSeconds(1))!;
        Assert.Equal(0, a.Shard.Index);
        Assert.Equal(2, b.Shard.Index);   // shard 1 was committed already: done from the start
        Assert.Equal(T0 + Lease, a.ExpiresAt);
        Assert.Equal(T0 + TimeSpan.FromSeconds(11), b.ExpiresAt);
        Assert.NotEqual(a.LeaseId, b.LeaseId);
        Assert.Equal(T0, t.FirstLeaseAt);
        Assert.Null(t.LeaseShard("w3", T0));
        Assert.Null(t.LeaseFinalization("w3", T0));   // shards still running
        var c = t.Counts();
        Assert.Equal((1, 2, 0, 0, 3), (c.Done, c.Running, c.Failed, c.Pending, c.ExamplesDone));
        Assert.Equal(new[] { "w1", "w2" }, c.Owners.Order());
    }

    [Fact]
    public void An_expired_lease_counts_an_attempt_and_the_shard_is_leased_again_until_its_attempts_run_out()
    {
        var t = Table([5], maxAttempts: 2);
        var first = t.LeaseShard("w1", T0)!;
        string oldLease = first.LeaseId!;
        Assert.Empty(t.Expire(T0 + Lease - TimeSpan.FromTicks(1)));   // not yet
        var expired = t.Expire(T0 + Lease);
        Assert.Same(first, Assert.Single(expired));
        Assert.Equal(SlotState.Pending, first.State);
        Assert.Null(first.LeaseId);
        Assert.Contains("lease of worker w1 expired", first.LastError);
        Assert.Equal(1, t.Attempts);

        var second = t.LeaseShard("w2", T0 + Lease)!;
        Assert.Equal(2, second.Attempts + 1);   // the worker sees attempt 2
        Assert.Null(t.Renew(oldLease, 0, "w1", T0 + Lease, false));   // the old lease is gone: its shard is held by w2
        t.Expire(T0 + Lease * 2);
        Assert.Equal(SlotState.Failed, second.State);   // second expiry = the last attempt
        Assert.Equal(2, t.Attempts);
        Assert.True(t.AllFailed);
        Assert.Null(t.LeaseShard("w3", T0 + Lease * 2));
        Assert.StartsWith("1 of 1 shards failed after 2 attempts (shard 0: lease of worker w2 expired", t.FailureSummary());
    }

    [Fact]
    public void Renewal_extends_a_held_lease_and_refuses_a_lost_one()
    {
        var t = Table([1, 1]);
        var a = t.LeaseShard("w1", T0)!;
        Assert.Equal(T0 + TimeSpan.FromSeconds(8) + Lease, t.Renew(a.LeaseId!, 0, "w1", T0 + TimeSpan.FromSeconds(8), false));
        Assert.Empty(t.Expire(T0 + TimeSpan.FromSeconds(12)));   // renewed: past the first expiry, still held
        string lost = a.LeaseId!;
        t.Expire(T0 + TimeSpan.FromSeconds(18));
        var b = t.LeaseShard("w2", T0 + TimeSpan.FromSeconds(18))!;
        Assert.Same(a, b);
        Assert.Null(t.Renew(lost, 0, "w1", T0 + TimeSpan.FromSeconds(19), false));   // held by w2 now
        Assert.Equal("w2", b.Owner);
    }

    [Fact]
    public void An_unknown_lease_of_a_pending_shard_is_adopted_after_a_move()
    {
        var t = Table([1, 1]);
        var expires = t.Renew("from-the-old-activation", 1, "w9", T0, false);
        Assert.Equal(T0 + Lease, expires);
        var slot = t.Shards[1];
        Assert.Equal((SlotState.Running, "from-the-old-activation", "w9"), (slot.State, slot.LeaseId, slot.Owner));
        Assert.Equal(0, t.LeaseShard("w1", T0)!.Shard.Index);   // shard 1 is held: the next lease is shard 0
        Assert.Null(t.Renew("another-old-one", 1, "w8", T0, false));   // held by the adopter
        Assert.Null(t.Renew("finalization", -1, "w8", T0, true));   // shards not settled: no finalization to adopt
    }

    [Fact]
    public void Release_and_storage_failures_requeue_without_counting_an_attempt()
    {
        var t = Table([1], maxAttempts: 1);
        var a = t.LeaseShard("w1", T0)!;
        Assert.Same(a, t.Requeue(a.LeaseId!));
        Assert.Equal(SlotState.Pending, a.State);
        Assert.Null(t.Requeue("not-held"));
        var b = t.LeaseShard("w2", T0)!;
        Assert.Same(b, t.Requeue(b.LeaseId!, "storage unreachable"));
        Assert.Equal("storage unreachable", b.LastError);
        Assert.Equal(0, t.Attempts);
        Assert.Equal(0, b.Attempts);   // still on its first attempt although max attempts is 1
        Assert.NotNull(t.LeaseShard("w3", T0));
    }

    [Fact]
    public void A_shard_commits_exactly_once_whichever_attempt_reports_it()
    {
        var t = Table([3, 4]);
        var a = t.LeaseShard("w1", T0)!;
        t.Expire(T0 + Lease);   // w1 is slow: its lease expires and w2 takes the shard
        var b = t.LeaseShard("w2", T0 + Lease)!;
        Assert.True(t.Complete(0, examplesRejected: 1));   // w1's late commit won
        Assert.False(t.Complete(0, examplesRejected: 1));   // w2 finds it committed: counted once
        Assert.False(t.Complete(7, 0));   // no such shard
        Assert.Equal(SlotState.Done, b.State);
        Assert.Equal(1, t.RuntimeRejects);
        Assert.Equal(LeaseTable.FailOutcome.Stale, t.Fail(b.LeaseId ?? "gone", "late error", out _));   // done: its lease is over
        var c = t.Counts();
        Assert.Equal((1, 0, 0, 1, 3), (c.Done, c.Running, c.Failed, c.Pending, c.ExamplesDone));
        Assert.Equal(1, t.Attempts);   // the expiry
    }

    [Fact]
    public void Failures_count_attempts_and_the_last_one_fails_the_shard_for_good()
    {
        var t = Table([2, 2], maxAttempts: 2);
        var s = t.LeaseShard("w1", T0)!;
        Assert.Equal(LeaseTable.FailOutcome.Retry, t.Fail(s.LeaseId!, "boom 1", out var slot));
        Assert.Same(s, slot);
        Assert.Equal(SlotState.Pending, s.State);
        Assert.Equal(LeaseTable.FailOutcome.Stale, t.Fail("boom-again-same-lease", "x", out _));
        Assert.Same(s, t.LeaseShard("w1", T0));
        Assert.Equal(LeaseTable.FailOutcome.GaveUp, t.Fail(s.LeaseId!, "boom 2", out _));
        Assert.Equal(SlotState.Failed, s.State);
        Assert.Equal(2, t.Attempts);
        Assert.False(t.AllFailed);
        Assert.True(t.AnyFailed);
        var other = t.LeaseShard("w1", T0)!;
        Assert.Equal(1, other.Shard.Index);
        Assert.True(t.Complete(1, 0));
        Assert.True(t.AllSettled);
        Assert.Equal("1 of 2 shards failed after 2 attempts (shard 0: boom 2); the other shards are committed: submit the same job again to retry the failed ones",
            t.FailureSummary());
    }

    [Fact]
    public void The_finalization_is_leased_once_every_shard_settled_and_is_retried_but_never_fails_by_expiry()
    {
        var t = Table([1], maxAttempts: 2);
        Assert.Null(t.LeaseFinalization("w1", T0));   // a shard is pending
        var s = t.LeaseShard("w1", T0)!;
        Assert.True(t.Complete(s.Shard.Index, 0));
        var f = t.LeaseFinalization("w1", T0)!;
        Assert.True(f.IsFinalization);
        Assert.Equal(-1, f.Shard.Index);
        Assert.Null(t.LeaseFinalization("w2", T0));   // held
        t.Expire(T0 + Lease);
        t.Expire(T0 + Lease);
        Assert.Equal(SlotState.Pending, f.State);
        var again = t.LeaseFinalization("w2", T0 + Lease)!;
        Assert.Same(f, again);
        t.Expire(T0 + Lease * 2);   // second expiry: attempts = max, still pending (only reported errors fail a job)
        Assert.Equal((SlotState.Pending, 2), (f.State, f.Attempts));
        var third = t.LeaseFinalization("w3", T0 + Lease * 2)!;
        Assert.Equal(LeaseTable.FailOutcome.GaveUp, t.Fail(third.LeaseId!, "disk full", out var slot));
        Assert.True(slot!.IsFinalization);
        t.ForgetFinalization();
        Assert.Null(t.Finalization);
    }

    [Fact]
    public void Cancelling_drops_every_lease_without_counting_attempts()
    {
        var t = Table([1, 1, 1]);
        t.LeaseShard("w1", T0);
        t.LeaseShard("w2", T0);
        t.DropLeases();
        var c = t.Counts();
        Assert.Equal((0, 0, 3), (c.Running, c.Failed, c.Pending));
        Assert.Empty(c.Owners);
        Assert.Equal(0, t.Attempts);
    }

    [Fact]
    public void Shards_must_be_numbered_in_order()
    {
        var e = Assert.Throws<ArgumentException>(() => new LeaseTable([new PlannedShard(1, [], [])], new HashSet<int>(), 3, Lease));
        Assert.Contains("shard 0 has index 1", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new LeaseTable([], new HashSet<int>(), 0, Lease));
    }

    [Fact]
    public void The_rate_counts_completions_of_the_last_window_from_the_first_lease()
    {
        var rate = new CompletionRate(TimeSpan.FromSeconds(60));
        Assert.Equal(0, rate.PerSecond(T0, T0));
        rate.Record(T0 + TimeSpan.FromSeconds(10), 20);
        rate.Record(T0 + TimeSpan.FromSeconds(20), 20);
        Assert.Equal(40 / 20.0, rate.PerSecond(T0 + TimeSpan.FromSeconds(20), T0), 9);
        Assert.Equal(20 / 60.0, rate.PerSecond(T0 + TimeSpan.FromSeconds(75), T0), 9);   // the first completion left the window
        Assert.Equal(0, rate.PerSecond(T0 + TimeSpan.FromSeconds(200), T0));
    }

    [Fact]
    public void The_storage_wait_pauses_with_backoff_then_gives_up_naming_the_endpoint()
    {
        var watch = new StorageOutageWatch(10);
        Assert.Null(watch.Notice(T0));
        Assert.Null(watch.Note("http://store", "refused", T0, out var p1));
        Assert.Equal(TimeSpan.FromSeconds(1), p1);
        Assert.True(watch.IsPaused(T0 + TimeSpan.FromSeconds(0.5)));
        Assert.False(watch.IsPaused(T0 + p1));
        Assert.Null(watch.Note("http://store", "refused", T0 + TimeSpan.FromSeconds(2), out var p2));
        Assert.Equal(TimeSpan.FromSeconds(2), p2);
        Assert.Null(watch.Note("http://store", "refused", T0 + TimeSpan.FromSeconds(9), out var p3));
        Assert.Equal(TimeSpan.FromSeconds(1), p3);   // cut to what is left of the wait
        Assert.StartsWith("paused: output storage http://store unreachable for 9 s (3 tries)", watch.Notice(T0 + TimeSpan.FromSeconds(9)));
        Assert.Null(watch.GiveUpIfSpent(T0 + TimeSpan.FromSeconds(9.9)));
        var message = watch.GiveUpIfSpent(T0 + TimeSpan.FromSeconds(10));
        Assert.StartsWith("output storage http://store is unreachable: gave up after 3 tries over 10 s", message);
        Assert.Equal(0, watch.Tries);   // the outage is over with the job
        Assert.Null(watch.Notice(T0 + TimeSpan.FromSeconds(10)));
    }
}
