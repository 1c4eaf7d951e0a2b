using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Azure.Identity;

namespace LlavaMech.Storage;

public enum OutputKind
{
    Local,
    AzureBlob,
}

/// <summary>
/// Where a run writes its tables: a local folder, or an Azure Blob Storage container and prefix.
/// Accepted forms:
/// <list type="bullet">
/// <item><c>out/run1</c>, <c>/data/out</c>, <c>file:///data/out</c>: a local folder.</item>
/// <item><c>az://container/prefix/...</c>: a container (and optional prefix) in the account named by the credentials
/// (see <see cref="OpenStore"/>).</item>
/// <item><c>https://ACCOUNT.blob.core.windows.net/container/prefix</c> (or any blob endpoint URL): the same with an
/// explicit endpoint; a query string (SAS) is refused: give credentials through the environment instead.</item>
/// </list>
/// This file is the one place that tells the backends apart: everything else holds an <see cref="IObjectStore"/>
/// (from <see cref="OpenStore"/>, or a silo's <see cref="ObjectStores"/>) and location strings.
/// </summary>
public sealed partial record OutputLocation
{
    /// <summary>Connection string variable (preferred): "DefaultEndpointsProtocol=...;AccountName=...;AccountKey=..." or a SAS connection string.</summary>
    public const string ConnectionVariable = "LLAVAMECH_STORAGE_CONNECTION";

    /// <summary>The Azure SDKs' standard connection string variable, used when <see cref="ConnectionVariable"/> is unset.</summary>
    public const string StandardConnectionVariable = "AZURE_STORAGE_CONNECTION_STRING";

    /// <summary>Account name for Microsoft Entra ID sign-in through DefaultAzureCredential (managed identity, workload identity, az login, ...).</summary>
    public const string AccountVariable = "AZURE_STORAGE_ACCOUNT";

    private OutputLocation(OutputKind kind, string? localPath, string? container, string prefix, Uri? serviceUri)
        => (Kind, LocalPath, Container, Prefix, ServiceUri) = (kind, localPath, container, prefix, serviceUri);

    public OutputKind Kind { get; }

    /// <summary>Absolute folder for <see cref="OutputKind.Local"/>.</summary>
    public string? LocalPath { get; }

    /// <summary>Container for <see cref="OutputKind.AzureBlob"/>.</summary>
    public string? Container { get; }

    /// <summary>Prefix inside the container ("" for the container root), without leading or trailing '/'.</summary>
    public string Prefix { get; }

    /// <summary>The blob service endpoint when the location was given as an https URL; null for az:// (taken from the credentials).</summary>
    public Uri? ServiceUri { get; }

    public override string ToString() => Kind == OutputKind.Local
        ? LocalPath!
        : ServiceUri is null
            ? $"az://{Container}{(Prefix.Length > 0 ? "/" + Prefix : "")}"
            : $"{ServiceUri.ToString().TrimEnd('/')}/{Container}{(Prefix.Length > 0 ? "/" + Prefix : "")}";

    /// <summary>
    /// The location as a job records it: a local folder made absolute (relative to the current directory, as
    /// <see cref="Parse"/> reads it); a blob location as written. Throws <see cref="ArgumentException"/> like <see cref="Parse"/>.
    /// </summary>
    public static string Normalize(string text)
    {
        var location = Parse(text);
        return location.Kind == OutputKind.Local ? location.LocalPath! : text.Trim();
    }

    /// <summary>The location of <paramref name="name"/> under this one (a sub-folder, or a longer blob prefix).</summary>
    public string Child(string name)
    {
        ObjectKeys.Validate(name, nameof(name));
        return Kind == OutputKind.Local ? Path.Combine(LocalPath!, name) : ToString().TrimEnd('/') + "/" + name;
    }

    /// <summary>
    /// What makes two opened stores the same: the location and, for a blob location, the credentials the environment
    /// gives now (a SHA-256 of them, so the key holds no secret).
    /// </summary>
    internal string StoreKey(Func<string, string?>? environment = null)
    {
        if (Kind == OutputKind.Local) return Path.TrimEndingDirectorySeparator(LocalPath!);
        environment ??= Environment.GetEnvironmentVariable;
        string credentials = string.Join('\n', environment(ConnectionVariable), environment(StandardConnectionVariable), environment(AccountVariable));
        return ToString() + "#" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(credentials)));
    }

    /// <summary>Parses an output location (see the type's summary). Throws <see cref="ArgumentException"/> with the reason.</summary>
    public static OutputLocation Parse(string text)
    {
        if (string.IsNullOrWhiteSpace(text))
            throw new ArgumentException("output location is empty", nameof(text));
        text = text.Trim();
        var scheme = SchemeRegex().Match(text);
        if (!scheme.Success || (OperatingSystem.IsWindows() && scheme.Groups[1].Value.Length == 1))
            return new OutputLocation(OutputKind.Local, Path.GetFullPath(text), null, "", null);

        string s = scheme.Groups[1].Value.ToLowerInvariant();
        switch (s)
        {
            case "file":
                return new OutputLocation(OutputKind.Local, Path.GetFullPath(new Uri(text).LocalPath), null, "", null);
            case "az":
            {
                string rest = text[(s.Length + 3)..];
                var (container, prefix) = SplitContainer(rest, text);
                return new OutputLocation(OutputKind.AzureBlob, null, container, prefix, null);
            }
            case "https":
            case "http":
            {
                var uri = new Uri(text);
                if (!string.IsNullOrEmpty(uri.Query))
                    throw new ArgumentException($"blob URL must not carry a query string (SAS): give credentials in {ConnectionVariable} instead", nameof(text));
                string path = uri.AbsolutePath.Trim('/');
                // Emulator-style URLs (http://127.0.0.1:10000/ACCOUNT/container/...) keep the account in the path.
                bool pathStyle = uri.IsLoopback || System.Net.IPAddress.TryParse(uri.Host, out _);
                string serviceBase = uri.GetLeftPart(UriPartial.Authority);
                if (pathStyle)
                {
                    int slash = path.IndexOf('/');
                    if (slash <= 0) throw new ArgumentException($"'{Redaction.Redact(text)}' names no container", nameof(text));
                    serviceBase += "/" + path[..slash];
                    path = path[(slash + 1)..];
                }
                var (container, prefix) = SplitContainer(path, text);
                return new OutputLocation(OutputKind.AzureBlob, null, container, prefix, new Uri(serviceBase + "/"));
            }
            default:
                throw new ArgumentException($"unsupported output location scheme '{s}://' (use a local path, az://container/prefix or an https blob URL)", nameof(text));
        }
    }

    private static (string Container, string Prefix) SplitContainer(string rest, string text)
    {
        rest = rest.Trim('/');
        int slash = rest.IndexOf('/');
        string container = slash < 0 ? rest : rest[..slash];
        string prefix = slash < 0 ? "" : rest[(slash + 1)..].Trim('/');
        if (!ContainerRegex().IsMatch(container) || container.Contains("--"))
            throw new ArgumentException(
                $"'{container}' in '{Redaction.Redact(text)}' is not a valid container name (3-63 lowercase letters, digits and single hyphens)", nameof(text));
        ObjectKeys.NormalizePrefix(prefix);
        return (container, prefix);
    }

    /// <summary>
    /// Opens the store. Local: a <see cref="LocalObjectStore"/> (the folder is created). Azure: credentials from the
    /// environment, in this order: <c>LLAVAMECH_STORAGE_CONNECTION</c>, <c>AZURE_STORAGE_CONNECTION_STRING</c>
    /// (connection strings: their endpoint wins over an https location's), then
    /// <c>AZURE_STORAGE_ACCOUNT</c> (or the https URL's endpoint) with DefaultAzureCredential.
    /// </summary>
    /// <param name="environment">Looks up a variable (default: the process environment).</param>
    /// <param name="createFolder">Local: create the folder when missing; when false a missing folder throws
    /// <see cref="DirectoryNotFoundException"/> ("&lt;folder&gt; does not exist"). Blob locations ignore it.</param>
    public IObjectStore OpenStore(Func<string, string?>? environment = null, BlobStoreOptions? options = null, bool createFolder = true)
    {
        var store = Create(environment, options, createFolder);
        StorageMetrics.StoreOpened(store);
        return store;
    }

    private IObjectStore Create(Func<string, string?>? environment, BlobStoreOptions? options, bool createFolder)
    {
        if (Kind == OutputKind.Local)
        {
            if (!createFolder && !Directory.Exists(LocalPath))
                throw new DirectoryNotFoundException($"{LocalPath} does not exist");
            return new LocalObjectStore(LocalPath!);
        }

        environment ??= Environment.GetEnvironmentVariable;
        string? connection = NonEmpty(environment(ConnectionVariable)) ?? NonEmpty(environment(StandardConnectionVariable));
        if (connection is not null)
            return new BlobObjectStore(connection, Container!, Prefix, options);

        Uri? service = ServiceUri;
        if (service is null)
        {
            string? account = NonEmpty(environment(AccountVariable));
            if (account is null)
                throw new ArgumentException(
                    $"{this} needs credentials: set {ConnectionVariable} to a storage connection string, or {AccountVariable} to the account name to sign in with DefaultAzureCredential (managed identity, workload identity, az login)");
            if (!AccountRegex().IsMatch(account))
                throw new ArgumentException($"{AccountVariable} '{account}' is not a storage account name (3-24 lowercase letters and digits)");
            service = new Uri($"https://{account}.blob.core.windows.net/");
        }
        var containerUri = new Uri(service, Uri.EscapeDataString(Container!));
        return new BlobObjectStore(containerUri, new DefaultAzureCredential(), Prefix, options);
    }

    private static string? NonEmpty(string? s) => string.IsNullOrWhiteSpace(s) ? null : s;

    [GeneratedRegex(@"^([A-Za-z][A-Za-z0-9+.-]*)://")]
    private static partial Regex SchemeRegex();

    [GeneratedRegex(@"^[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9]$")]
    private static partial Regex ContainerRegex();

    [GeneratedRegex(@"^[a-z0-9]{3,24}$")]
    private static partial Regex AccountRegex();
}
