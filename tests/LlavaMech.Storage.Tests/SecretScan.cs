using System.Collections;
using System.Reflection;
using System.Text;
using Azure;
using Azure.Storage.Blobs;
using Azure.Storage.Blobs.Models;

namespace LlavaMech.Testing;

/// <summary>
/// Looks for secrets (a SAS signature, an account key) everywhere a reader of a container can see them: the
/// container's properties and metadata, and for every blob (snapshots and uncommitted blobs included) its name, its
/// content, every property of its listing entry and of Get Blob Properties (copy source, copy id, copy status
/// description, ...), its metadata and its tags. Also reports every blob that records a server-side copy. Shared by the
/// storage and the pipeline tests (linked into both).
/// </summary>
public static class SecretScan
{
    /// <summary>One finding per place that shows a secret or a copy record, as "blob: where"; empty when clean.</summary>
    public static async Task<List<string>> FindAsync(BlobContainerClient container, IReadOnlyCollection<string> secrets)
    {
        var needles = secrets.Where(s => !string.IsNullOrEmpty(s))
            .SelectMany(s => new[] { s, Uri.EscapeDataString(s), Uri.UnescapeDataString(s) }).Distinct().ToList();
        if (needles.Count == 0) throw new ArgumentException("nothing to look for", nameof(secrets));
        var found = new List<string>();

        void Check(string where, string? text)
        {
            if (string.IsNullOrEmpty(text)) return;
            foreach (var n in needles)
                if (text.Contains(n, StringComparison.Ordinal))
                    found.Add($"{where} holds a secret");
        }

        var cp = (await container.GetPropertiesAsync()).Value;
        Check("container properties", Describe(cp));
        foreach (var (k, v) in cp.Metadata) Check($"container metadata {k}", k + "=" + v);

        await foreach (var item in container.GetBlobsAsync(
                           new GetBlobsOptions { Traits = BlobTraits.All, States = BlobStates.Snapshots | BlobStates.Uncommitted }))
        {
            string name = item.Name + (item.Snapshot is null ? "" : "@" + item.Snapshot);
            Check(name + " (name)", item.Name);
            Check(name + " (listing)", Describe(item.Properties));
            foreach (var (k, v) in item.Metadata ?? new Dictionary<string, string>()) Check($"{name} metadata {k}", k + "=" + v);
            foreach (var (k, v) in item.Tags ?? new Dictionary<string, string>()) Check($"{name} tag {k}", k + "=" + v);
            if (item.Properties.CopyId is not null || item.Properties.CopySource is not null)
                found.Add($"{name} records a server-side copy (copy id {item.Properties.CopyId}, source {item.Properties.CopySource?.GetLeftPart(UriPartial.Path)})");

            var blob = item.Snapshot is null ? container.GetBlobClient(item.Name) : container.GetBlobClient(item.Name).WithSnapshot(item.Snapshot);
            BlobProperties p;
            try { p = (await blob.GetPropertiesAsync()).Value; }
            catch (RequestFailedException e) when (e.Status == 404) { continue; }   // uncommitted: no properties, no content
            Check(name + " (properties)", Describe(p));
            foreach (var (k, v) in p.Metadata) Check($"{name} metadata {k}", k + "=" + v);
            if (p.CopyId is not null || p.CopySource is not null)
                found.Add($"{name} records a server-side copy (properties)");
            var content = (await blob.DownloadContentAsync()).Value.Content.ToArray();
            Check(name + " (content)", Encoding.UTF8.GetString(content));
            Check(name + " (content, latin1)", Encoding.Latin1.GetString(content));
        }
        return found.Distinct().ToList();
    }

    /// <summary>Every public property of a properties object, as "Name=value" lines (collections and dictionaries expanded).</summary>
    public static string Describe(object o)
    {
        var sb = new StringBuilder();
        foreach (var prop in o.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (prop.GetIndexParameters().Length > 0) continue;
            object? v;
            try { v = prop.GetValue(o); }
            catch (TargetInvocationException) { continue; }
            sb.Append(prop.Name).Append('=');
            switch (v)
            {
                case null: break;
                case string s: sb.Append(s); break;
                case byte[] b: sb.Append(Convert.ToBase64String(b)); break;
                case IDictionary d:
                    foreach (DictionaryEntry e in d) sb.Append(e.Key).Append(':').Append(e.Value).Append(';');
                    break;
                case IEnumerable e:
                    foreach (var x in e) sb.Append(x).Append(';');
                    break;
                default: sb.Append(v); break;
            }
            sb.Append('\n');
        }
        return sb.ToString();
    }
}
