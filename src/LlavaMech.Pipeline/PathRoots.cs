using LlavaMech.Datasets.Manifest;
using LlavaMech.Storage;
using Microsoft.Extensions.Configuration;

namespace LlavaMech.Pipeline;

/// <summary>
/// Where a silo's jobs may read and write: roots for model folders, manifests, image roots and outputs, each a local
/// folder or an <c>az://container[/prefix]</c>. A submitted job whose paths, with every symbolic link resolved, leave
/// them is refused before anything is read or recorded (<see cref="Check"/>). Images are bounded through the manifest:
/// an image lies in the manifest's folder (inside a manifest root) or under one of the job's image roots, which must lie
/// inside <see cref="Images"/>. A kind with no root is unrestricted (a silo on a desk); a cluster configures all four
/// (k8s/base/config.env).
/// </summary>
public sealed record PathRoots
{
    public IReadOnlyList<string> Models { get; init; } = [];
    public IReadOnlyList<string> Manifests { get; init; } = [];
    public IReadOnlyList<string> Images { get; init; } = [];
    public IReadOnlyList<string> Outputs { get; init; } = [];

    /// <summary>Whether any kind is restricted.</summary>
    public bool Any => Models.Count + Manifests.Count + Images.Count + Outputs.Count > 0;

    /// <summary>Reads <c>Pipeline:Roots:Models</c>, <c>:Manifests</c>, <c>:Images</c>, <c>:Outputs</c> (comma-separated).</summary>
    public static PathRoots FromConfiguration(IConfiguration configuration)
    {
        var c = configuration.GetSection("Pipeline:Roots");
        IReadOnlyList<string> List(string key) =>
            (c[key] ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return new PathRoots { Models = List("Models"), Manifests = List("Manifests"), Images = List("Images"), Outputs = List("Outputs") };
    }

    /// <summary>
    /// The roots of a run on one machine (<c>run</c>, <c>reanalyze</c>): the current folder and the paths named on the
    /// command line, so a person at a desk runs what they named, through the same check as a cluster.
    /// </summary>
    public static PathRoots ForCommandLine(JobSpec spec, string currentDirectory) => new()
    {
        Models = [currentDirectory, spec.ModelDir],
        Manifests = [currentDirectory, spec.ManifestPath],
        Images = [currentDirectory, .. spec.Options.ImageRootList],
        Outputs = [currentDirectory, spec.Output],
    };

    /// <summary>Throws <see cref="ArgumentException"/> naming a root that is neither an absolute folder nor a storage location.</summary>
    public void Validate()
    {
        foreach (var (kind, roots) in Kinds())
            foreach (var r in roots)
                if (!IsRemote(r) && !Path.IsPathRooted(r))
                    throw new ArgumentException($"Pipeline:Roots:{kind}: '{r}' is neither an absolute folder nor az://container[/prefix]");
    }

    private IEnumerable<(string Kind, IReadOnlyList<string> Roots)> Kinds() =>
        [("Models", Models), ("Manifests", Manifests), ("Images", Images), ("Outputs", Outputs)];

    /// <summary>
    /// Refuses <paramref name="spec"/> when its model folder, manifest, image roots or output lie outside this silo's
    /// roots (symbolic links followed), naming the path, where it leads and the roots.
    /// </summary>
    /// <exception cref="ArgumentException">A path leaves its roots (an ArgumentException, so it reaches the client as it is).</exception>
    public void Check(JobSpec spec)
    {
        Require("model folder", spec.ModelDir, Models, "Models", "model");
        Require("manifest", spec.ManifestPath, Manifests, "Manifests", "manifest");
        foreach (var root in spec.Options.ImageRootList) Require("image root", root, Images, "Images", "image");
        Require("output", spec.Output, Outputs, "Outputs", "output");
    }

    private static void Require(string what, string path, IReadOnlyList<string> roots, string kind, string noun)
    {
        if (roots.Count == 0) return;
        if (IsRemote(path) || roots.Any(IsRemote))
        {
            string? key = RemoteKey(path);
            if (key is not null && roots.Where(IsRemote).Select(RemoteKey).Any(r => r is not null && (key == r || key.StartsWith(r.TrimEnd('/') + "/", StringComparison.Ordinal))))
                return;
            if (IsRemote(path))
                throw new ArgumentException($"{what} '{path}' is outside this silo's {noun} roots ({string.Join(", ", roots)}; Pipeline:Roots:{kind})");
        }
        string real = ManifestReader.RealPath(path);
        foreach (var root in roots.Where(r => !IsRemote(r)))
            if (ManifestReader.IsUnder(real, ManifestReader.RealPath(root))) return;
        string leads = real == Path.GetFullPath(path) ? "" : $" (it leads to '{real}')";
        throw new ArgumentException($"{what} '{path}'{leads} is outside this silo's {noun} roots ({string.Join(", ", roots)}; Pipeline:Roots:{kind})");
    }

    private static bool IsRemote(string location) => location.Contains("://", StringComparison.Ordinal);

    /// <summary>"container/prefix" of a storage location (az:// or a blob URL), or null for a local one.</summary>
    private static string? RemoteKey(string location)
    {
        if (!IsRemote(location)) return null;
        try
        {
            var l = OutputLocation.Parse(location);
            return l.Container is null ? null : (l.Prefix.Length == 0 ? l.Container : $"{l.Container}/{l.Prefix.Trim('/')}");
        }
        catch (ArgumentException) { return null; }
    }
}
