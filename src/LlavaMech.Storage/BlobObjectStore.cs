using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Azure;
using Azure.Core;
using Azure.Storage.Blobs;
using Azure.Storage.Blobs.Models;

namespace LlavaMech.Storage;

/// <summary>Retry and timeout settings of a <see cref="BlobObjectStore"/>.</summary>
public sealed record BlobStoreOptions
{
    /// <summary>Retries after the first try of each request (exponential backoff with jitter).</summary>
    public int MaxRetries { get; init; } = 4;

    /// <summary>The first backoff delay; each retry doubles it up to <see cref="MaxRetryDelay"/>.</summary>
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromSeconds(0.5);

    public TimeSpan MaxRetryDelay { get; init; } = TimeSpan.FromSeconds(8);

    /// <summary>Timeout of one network operation of one try (a try that times out is retried).</summary>
    public TimeSpan NetworkTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Create the container on the first write when it does not exist.</summary>
    public bool CreateContainer { get; init; } = true;

    /// <summary>Client options carrying these retry settings (exponential mode).</summary>
    public BlobClientOptions ToClientOptions()
    {
        var o = new BlobClientOptions();
        o.Retry.Mode = RetryMode.Exponential;
        o.Retry.MaxRetries = MaxRetries;
        o.Retry.Delay = RetryDelay;
        o.Retry.MaxDelay = MaxRetryDelay;
        o.Retry.NetworkTimeout = NetworkTimeout;
        return o;
    }
}

/// <summary>
/// An object store in an Azure Blob Storage container, under an optional prefix ("folder"). Transient failures
/// (connection refused, timeouts, 408/429/5xx) are retried with exponential backoff by the client's retry policy, and
/// by this class for the errors that policy did not retry; when they persist a <see cref="StorageException"/> names the
/// container URL (never the key, SAS or connection string). Put-if-absent is an upload with If-None-Match: *; a move is
/// a download and a re-upload with If-None-Match: * followed by a delete of the source (no server-side copy, whose
/// destination would record the source URL, SAS included).
/// </summary>
public sealed class BlobObjectStore : IObjectStore
{
    private readonly BlobContainerClient _container;
    private readonly BlobStoreOptions _options;
    private readonly string _prefix;        // "" or "a/b/" (with trailing slash)
    private readonly int _sdkTries;
    private volatile bool _containerReady;

    /// <summary>Over an existing client (its own retry options apply to each request; a SAS in its URL is registered for redaction).</summary>
    public BlobObjectStore(BlobContainerClient container, string? prefix = null, BlobStoreOptions? options = null)
    {
        _container = container ?? throw new ArgumentNullException(nameof(container));
        RegisterSasSignature(container.Uri.Query);
        _options = options ?? new BlobStoreOptions();
        _sdkTries = _options.MaxRetries + 1;
        var p = ObjectKeys.NormalizePrefix(prefix).TrimEnd('/');
        _prefix = p.Length == 0 ? "" : p + "/";
        Location = Endpoint(container.Uri) + (p.Length == 0 ? "" : "/" + p);
    }

    /// <summary>From a connection string (its AccountKey / SAS is registered for redaction) and a container name.</summary>
    public BlobObjectStore(string connectionString, string containerName, string? prefix = null, BlobStoreOptions? options = null)
        : this(CreateClient(connectionString, containerName, options ?? new BlobStoreOptions()), prefix, options)
    {
    }

    /// <summary>From a container URL and a token credential (e.g. DefaultAzureCredential: managed identity, az login, ...).</summary>
    public BlobObjectStore(Uri containerUri, TokenCredential credential, string? prefix = null, BlobStoreOptions? options = null)
        : this(new BlobContainerClient(containerUri, credential, (options ?? new BlobStoreOptions()).ToClientOptions()), prefix, options)
    {
    }

    public BlobContainerClient Container => _container;

    /// <summary>The container URL (no query string, so no SAS) and prefix.</summary>
    public string Location { get; }

    public override string ToString() => Location;

    public string? LocalPath(string key) => null;

    private static BlobContainerClient CreateClient(string connectionString, string containerName, BlobStoreOptions options)
    {
        if (string.IsNullOrWhiteSpace(connectionString))
            throw new ArgumentException("storage connection string is empty", nameof(connectionString));
        RegisterSecrets(connectionString);
        try
        {
            return new BlobContainerClient(connectionString, containerName, options.ToClientOptions());
        }
        catch (Exception e) when (e is FormatException or ArgumentException or InvalidOperationException)
        {
            throw new ArgumentException(Redaction.Redact(
                $"invalid storage connection string or container name '{containerName}' (connection string keys: {KeysOf(connectionString)}): {e.Message}"));
        }
    }

    /// <summary>Registers the AccountKey and SharedAccessSignature values of a connection string with <see cref="Redaction"/>.</summary>
    internal static void RegisterSecrets(string connectionString)
    {
        foreach (var part in connectionString.Split(';', StringSplitOptions.RemoveEmptyEntries))
        {
            int eq = part.IndexOf('=');
            if (eq <= 0) continue;
            var k = part[..eq].Trim();
            if (k.Equals("AccountKey", StringComparison.OrdinalIgnoreCase) || k.Equals("SharedAccessSignature", StringComparison.OrdinalIgnoreCase))
                Redaction.RegisterSecret(part[(eq + 1)..].Trim());
            if (k.Equals("SharedAccessSignature", StringComparison.OrdinalIgnoreCase))
                RegisterSasSignature(part[(eq + 1)..]);
        }
    }

    /// <summary>Registers the signature of a SAS query string ("?sv=...&amp;sig=...") with <see cref="Redaction"/>, as written and URL-decoded.</summary>
    internal static void RegisterSasSignature(string? query)
    {
        foreach (var p in (query ?? "").TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
            if (p.StartsWith("sig=", StringComparison.OrdinalIgnoreCase))
            {
                string sig = p[4..].Trim();
                Redaction.RegisterSecret(sig);
                Redaction.RegisterSecret(Uri.UnescapeDataString(sig));
            }
    }

    private static string KeysOf(string connectionString) => string.Join(", ", connectionString
        .Split(';', StringSplitOptions.RemoveEmptyEntries).Select(p => p.Split('=')[0].Trim()));

    private static string Endpoint(Uri uri) => new UriBuilder(uri) { Query = "", Fragment = "" }.Uri.ToString().TrimEnd('/');

    private BlobClient Blob(string key) => _container.GetBlobClient(_prefix + ObjectKeys.Validate(key));

    private async Task EnsureContainerAsync(CancellationToken ct)
    {
        if (_containerReady || !_options.CreateContainer) return;
        try
        {
            await _container.CreateIfNotExistsAsync(cancellationToken: ct).ConfigureAwait(false);
        }
        catch (RequestFailedException e) when (e.Status == 403)
        {
            // A container-scoped SAS or role may write blobs without the right to create containers: go on, the
            // write itself reports a real authorization failure.
        }
        _containerReady = true;
    }

    public Task PutAsync(string key, Stream content, CancellationToken ct = default) =>
        Run("put", key, async () =>
        {
            await EnsureContainerAsync(ct).ConfigureAwait(false);
            Rewind(content);
            await Blob(key).UploadAsync(content, new BlobUploadOptions(), ct).ConfigureAwait(false);
            return true;
        }, content, ct);

    public Task<bool> PutIfAbsentAsync(string key, Stream content, CancellationToken ct = default) =>
        Run("put-if-absent", key, async () =>
        {
            await EnsureContainerAsync(ct).ConfigureAwait(false);
            Rewind(content);
            try
            {
                var options = new BlobUploadOptions { Conditions = new BlobRequestConditions { IfNoneMatch = ETag.All } };
                await Blob(key).UploadAsync(content, options, ct).ConfigureAwait(false);
                return true;
            }
            catch (RequestFailedException e) when (e.Status is 409 or 412)
            {
                return false;   // BlobAlreadyExists / ConditionNotMet
            }
        }, content, ct);

    public Task<Stream?> OpenReadAsync(string key, CancellationToken ct = default) =>
        Run("get", key, async () =>
        {
            try
            {
                var r = await Blob(key).DownloadStreamingAsync(new BlobDownloadOptions(), ct).ConfigureAwait(false);
                return (Stream?)new GuardedStream(r.Value.Content, this, key);
            }
            catch (RequestFailedException e) when (e.Status == 404)
            {
                return null;
            }
        }, null, ct);

    public Task<VersionedObject?> GetVersionedAsync(string key, CancellationToken ct = default) =>
        Run<VersionedObject?>("get", key, async () =>
        {
            try
            {
                var r = await Blob(key).DownloadContentAsync(ct).ConfigureAwait(false);
                return new VersionedObject(r.Value.Content.ToArray(), r.Value.Details.ETag.ToString());
            }
            catch (RequestFailedException e) when (e.Status == 404)
            {
                return null;
            }
        }, null, ct);

    /// <summary>An upload with If-Match: the version (the blob's ETag), or If-None-Match: * when null; a refused condition (412, 409 exists, 404 gone) is null.</summary>
    public Task<string?> PutIfVersionAsync(string key, ReadOnlyMemory<byte> content, string? expectedVersion, CancellationToken ct = default) =>
        Run<string?>("put-if-version", key, async () =>
        {
            await EnsureContainerAsync(ct).ConfigureAwait(false);
            var options = new BlobUploadOptions { Conditions = Condition(expectedVersion) };
            try
            {
                var r = await Blob(key).UploadAsync(BinaryData.FromBytes(content), options, ct).ConfigureAwait(false);
                return r.Value.ETag.ToString();
            }
            catch (RequestFailedException e) when (e.Status is 409 or 412 || (e.Status == 404 && !IsContainerMissing(e)))
            {
                return null;
            }
        }, null, ct);

    public Task<bool> DeleteIfVersionAsync(string key, string expectedVersion, CancellationToken ct = default) =>
        Run("delete-if-version", key, async () =>
        {
            try
            {
                await Blob(key).DeleteAsync(DeleteSnapshotsOption.IncludeSnapshots, Condition(expectedVersion), ct).ConfigureAwait(false);
                return true;
            }
            catch (RequestFailedException e) when (e.Status is 404 or 409 or 412)
            {
                return false;
            }
        }, null, ct);

    private static BlobRequestConditions Condition(string? version) =>
        version is null ? new BlobRequestConditions { IfNoneMatch = ETag.All } : new BlobRequestConditions { IfMatch = new ETag(version) };

    public Task<bool> ExistsAsync(string key, CancellationToken ct = default) =>
        Run("exists", key, async () =>
        {
            try { return (await Blob(key).ExistsAsync(ct).ConfigureAwait(false)).Value; }
            catch (RequestFailedException e) when (e.Status == 404) { return false; }
        }, null, ct);

    public async IAsyncEnumerable<ObjectInfo> ListAsync(string prefix, [EnumeratorCancellation] CancellationToken ct = default)
    {
        prefix = ObjectKeys.NormalizePrefix(prefix);
        var items = await Run("list", prefix + "*", async () =>
        {
            var list = new List<ObjectInfo>();
            try
            {
                await foreach (var b in _container.GetBlobsAsync(new GetBlobsOptions { Prefix = _prefix + prefix }, ct).ConfigureAwait(false))
                    list.Add(new ObjectInfo(b.Name[_prefix.Length..], b.Properties.ContentLength ?? 0,
                        b.Properties.LastModified ?? DateTimeOffset.MinValue));
            }
            catch (RequestFailedException e) when (e.Status == 404)
            {
                list.Clear();   // no container yet: nothing stored
            }
            list.Sort((a, b) => string.CompareOrdinal(a.Key, b.Key));
            return list;
        }, null, ct).ConfigureAwait(false);
        foreach (var i in items)
            yield return i;
    }

    public Task<bool> DeleteAsync(string key, CancellationToken ct = default) =>
        Run("delete", key, async () =>
        {
            try { return (await Blob(key).DeleteIfExistsAsync(DeleteSnapshotsOption.IncludeSnapshots, null, ct).ConfigureAwait(false)).Value; }
            catch (RequestFailedException e) when (e.Status == 404) { return false; }
        }, null, ct);

    /// <summary>
    /// Moves by download and re-upload, never by a server-side copy: a copy records its source URL, which with a SAS
    /// credential carries the signature, in the destination's <c>x-ms-copy-source</c> property for anyone who may read
    /// the blob's properties. The destination is written with If-None-Match: * (so a blob that exists is never
    /// replaced), then the source is deleted.
    /// </summary>
    public Task<bool> MoveAsync(string sourceKey, string destinationKey, CancellationToken ct = default) =>
        Run("move", sourceKey + " -> " + destinationKey, async () =>
        {
            var src = Blob(sourceKey);
            var dst = Blob(destinationKey);
            bool copied;
            for (int round = 0; ; round++)
            {
                try
                {
                    copied = await ReuploadAsync(src, dst, ct).ConfigureAwait(false);
                    break;
                }
                catch (RequestFailedException e) when (e.Status == 404 && !IsContainerMissing(e))
                {
                    // The source is gone: moved by someone else when the destination is there now.
                    if (await CompleteAsync(dst, ct).ConfigureAwait(false)) return false;
                    throw new FileNotFoundException($"neither '{sourceKey}' nor '{destinationKey}' exists in {Location}");
                }
                catch (RequestFailedException e) when (e.Status is 409 or 412)
                {
                    // The destination exists: an earlier (interrupted) move of this same source, or a concurrent one.
                    if (await CompleteAsync(dst, ct).ConfigureAwait(false))
                    {
                        copied = false;
                        break;
                    }
                    if (round >= 3) throw;
                }
            }
            try { await src.DeleteIfExistsAsync(cancellationToken: ct).ConfigureAwait(false); }
            catch (RequestFailedException e) when (e.Status == 404) { }
            return copied;
        }, null, ct);

    /// <summary>Copies through a local temp file (seekable, so the upload can be retried), uploading with If-None-Match: *.</summary>
    private static async Task<bool> ReuploadAsync(BlobClient src, BlobClient dst, CancellationToken ct)
    {
        string tmp = Path.Combine(Path.GetTempPath(), "llavamech-move-" + Guid.NewGuid().ToString("N"));
        try
        {
            await src.DownloadToAsync(tmp, ct).ConfigureAwait(false);
            await using var fs = new FileStream(tmp, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: true);
            var options = new BlobUploadOptions { Conditions = new BlobRequestConditions { IfNoneMatch = ETag.All } };
            await dst.UploadAsync(fs, options, ct).ConfigureAwait(false);
            return true;
        }
        finally
        {
            try { File.Delete(tmp); } catch (IOException) { }
        }
    }

    private static bool IsContainerMissing(RequestFailedException e) => e.ErrorCode == "ContainerNotFound";

    /// <summary>
    /// True when <paramref name="blob"/> exists whole. An upload makes a blob appear whole or not at all; only the
    /// target of a server-side copy (left by versions that published by copy) can exist unfinished: a pending copy is
    /// waited for, and a failed or aborted one is deleted (false).
    /// </summary>
    private static async Task<bool> CompleteAsync(BlobClient blob, CancellationToken ct)
    {
        for (int i = 0; i < 600; i++)
        {
            BlobProperties p;
            try { p = (await blob.GetPropertiesAsync(cancellationToken: ct).ConfigureAwait(false)).Value; }
            catch (RequestFailedException e) when (e.Status == 404) { return false; }
            if (string.IsNullOrEmpty(p.CopyId) || p.CopyStatus == CopyStatus.Success) return true;
            if (p.CopyStatus != CopyStatus.Pending)
            {
                await blob.DeleteIfExistsAsync(cancellationToken: ct).ConfigureAwait(false);
                return false;
            }
            await Task.Delay(200, ct).ConfigureAwait(false);
        }
        return false;
    }

    private static void Rewind(Stream content)
    {
        if (content.CanSeek) content.Position = 0;
    }

    // ---- error handling -------------------------------------------------------------------------------------------

    private async Task<T> Run<T>(string op, string key, Func<Task<T>> body, Stream? content, CancellationToken ct)
    {
        int tries = 0;
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                return await body().ConfigureAwait(false);
            }
            catch (Exception e) when (e is not (StorageException or FileNotFoundException or ArgumentException)
                                      && !(e is OperationCanceledException && ct.IsCancellationRequested))
            {
                var (transient, sdkTries) = Classify(e);
                tries += sdkTries;
                // The client's policy retries what it can; retry here what it did not (one try, transient error).
                bool retry = transient && sdkTries == 1 && attempt <= _options.MaxRetries && (content is null || content.CanSeek);
                if (!retry)
                    throw Fail(op, key, e, tries, transient);
                await Task.Delay(Backoff(attempt), ct).ConfigureAwait(false);
            }
        }
    }

    internal StorageException Fail(string op, string key, Exception e, int tries, bool transient)
    {
        string what = transient
            ? $"Azure Blob Storage endpoint {Location} is unreachable or failing"
            : $"Azure Blob Storage request to {Location} failed";
        string cause = Describe(e);
        return new StorageException($"{what}: {op} '{key}' failed after {tries} attempt(s): {cause}", Location, e, tries, transient);
    }

    private TimeSpan Backoff(int attempt)
    {
        double ms = Math.Min(_options.MaxRetryDelay.TotalMilliseconds, _options.RetryDelay.TotalMilliseconds * Math.Pow(2, attempt - 1));
        return TimeSpan.FromMilliseconds(ms * (0.8 + 0.4 * Random.Shared.NextDouble()));
    }

    /// <summary>Whether the error is transient, and how many tries the client's retry policy made (its AggregateException holds one error per try).</summary>
    private (bool Transient, int Tries) Classify(Exception e)
    {
        if (e is AggregateException agg && agg.InnerExceptions.Count > 0)
            return (IsTransient(agg.InnerExceptions[^1]), agg.InnerExceptions.Count);
        bool t = IsTransient(e);
        // A final 5xx/408/429 response comes back after the policy already retried it.
        if (t && e is RequestFailedException { Status: > 0 }) return (true, _sdkTries);
        return (t, 1);
    }

    internal static bool IsTransient(Exception e) => e switch
    {
        RequestFailedException r => r.Status is 0 or 408 or 429 or 500 or 502 or 503 or 504,
        HttpRequestException or SocketException or TimeoutException or IOException => true,
        OperationCanceledException => true,   // not the caller's token: a network timeout
        AggregateException a => a.InnerExceptions.Count > 0 && IsTransient(a.InnerExceptions[^1]),
        _ => e.InnerException is not null && IsTransient(e.InnerException),
    };

    private static string Describe(Exception e)
    {
        var root = e is AggregateException { InnerExceptions.Count: > 0 } a ? a.InnerExceptions[^1] : e;
        string msg = root switch
        {
            RequestFailedException { Status: > 0 } r => $"HTTP {r.Status} {r.ErrorCode}".TrimEnd(),
            RequestFailedException r => r.InnerException?.Message ?? FirstLine(r.Message),
            _ => FirstLine(root.Message),
        };
        return Redaction.Redact(msg);
    }

    private static string FirstLine(string s)
    {
        int nl = s.IndexOfAny(['\r', '\n']);
        return nl < 0 ? s : s[..nl];
    }

    /// <summary>A download stream whose failures surface as <see cref="StorageException"/>.</summary>
    private sealed class GuardedStream(Stream inner, BlobObjectStore store, string key) : Stream
    {
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => inner.Length;
        public override long Position { get => inner.Position; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override int Read(byte[] buffer, int offset, int count)
        {
            try { return inner.Read(buffer, offset, count); }
            catch (Exception e) when (e is not OperationCanceledException) { throw store.Fail("read", key, e, 1, IsTransient(e)); }
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default)
        {
            try { return await inner.ReadAsync(buffer, ct).ConfigureAwait(false); }
            catch (Exception e) when (!(e is OperationCanceledException && ct.IsCancellationRequested))
            {
                throw store.Fail("read", key, e, 1, IsTransient(e));
            }
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) =>
            ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();

        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
