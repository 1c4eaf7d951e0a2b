using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Orleans.Connections.Security;

namespace LlavaMech.Pipeline;

/// <summary>
/// Mutual TLS of a cluster: every silo and every client presents a certificate signed by the cluster's CA, and each
/// side accepts only a peer whose certificate is (silo to silo, client to gateway). The files are a folder in the
/// layout of a Kubernetes TLS Secret as cert-manager writes it: <c>tls.crt</c> (this party's certificate, PEM),
/// <c>tls.key</c> (its private key, PEM) and <c>ca.crt</c> (the cluster's CA, PEM). <c>deploy/tls/make-dev-certs.sh</c>
/// makes a development CA and certificates; README, "Security model", says how to rotate them.
/// </summary>
public sealed class ClusterTls
{
    /// <summary>The files of the folder: this party's certificate, its key, the cluster's CA.</summary>
    public const string CertificateFile = "tls.crt", KeyFile = "tls.key", AuthorityFile = "ca.crt";

    /// <summary>Larger files are refused before they are read (a PEM certificate is a few KiB).</summary>
    public const long MaxFileBytes = 1 << 20;

    private ClusterTls(string dir, X509Certificate2 certificate, X509Certificate2Collection authorities) =>
        (Dir, Certificate, Authorities) = (dir, certificate, authorities);

    /// <summary>The folder the files were read from.</summary>
    public string Dir { get; }

    /// <summary>This party's certificate, with its private key.</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>The cluster's CA certificates: the only roots a peer's certificate may chain to.</summary>
    public X509Certificate2Collection Authorities { get; }

    /// <summary>
    /// Reads the three files of <paramref name="dir"/> and checks this party's own certificate as a peer would (dates,
    /// issued by the cluster's CA), so a wrong or expired certificate fails here, naming the file and why, instead of
    /// as a refused connection.
    /// </summary>
    /// <exception cref="TlsConfigurationException">A file is missing, too large or not PEM; the key does not match; the certificate is not valid now or not issued by the CA.</exception>
    public static ClusterTls Load(string dir)
    {
        dir = Path.GetFullPath(dir);
        if (!Directory.Exists(dir))
            throw new TlsConfigurationException($"TLS folder '{dir}' does not exist (it holds {CertificateFile}, {KeyFile} and {AuthorityFile})");
        string File(string name)
        {
            var path = Path.Combine(dir, name);
            var info = new FileInfo(path);
            if (!info.Exists) throw new TlsConfigurationException($"TLS folder '{dir}' has no {name} (it holds {CertificateFile}, {KeyFile} and {AuthorityFile})");
            if (info.Length > MaxFileBytes) throw new TlsConfigurationException($"'{path}' is {info.Length:N0} bytes; a PEM file here is at most {MaxFileBytes:N0}");
            return path;
        }
        string cert = File(CertificateFile), key = File(KeyFile), ca = File(AuthorityFile);
        X509Certificate2 certificate;
        var authorities = new X509Certificate2Collection();
        try
        {
            using var pem = X509Certificate2.CreateFromPemFile(cert, key);
            // A PKCS#12 round trip gives the key a form every TLS stack accepts (an ephemeral PEM key is refused by some).
            certificate = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
            authorities.ImportFromPemFile(ca);
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException)
        {
            // The message of a key or PEM error never quotes the file's content.
            throw new TlsConfigurationException($"TLS folder '{dir}': {CertificateFile} / {KeyFile} / {AuthorityFile} are not a PEM certificate, its private key and a CA: {e.Message}");
        }
        if (authorities.Count == 0) throw new TlsConfigurationException($"'{ca}' holds no certificate");
        var tls = new ClusterTls(dir, certificate, authorities);
        if (tls.Check(certificate) is { } reason)
            throw new TlsConfigurationException($"'{cert}' cannot be used: {reason}");
        return tls;
    }

    /// <summary>Null when <paramref name="peer"/> is valid now and chains to the cluster's CA; else why not, naming the certificate.</summary>
    public string? Check(X509Certificate2 peer)
    {
        string who = $"certificate '{peer.Subject}' (issuer '{peer.Issuer}')";
        var now = DateTime.Now;
        if (now > peer.NotAfter) return $"{who} expired on {peer.NotAfter.ToUniversalTime():yyyy-MM-dd HH:mm} UTC";
        if (now < peer.NotBefore) return $"{who} is not valid before {peer.NotBefore.ToUniversalTime():yyyy-MM-dd HH:mm} UTC";
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(Authorities);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (chain.Build(peer)) return null;
        var status = chain.ChainStatus.Select(s => s.Status).ToHashSet();
        if (status.Contains(X509ChainStatusFlags.UntrustedRoot) || status.Contains(X509ChainStatusFlags.PartialChain))
            return $"{who} is not issued by the cluster's CA ({string.Join(", ", Authorities.Select(a => $"'{a.Subject}', SHA-256 {a.GetCertHashString(HashAlgorithmName.SHA256)[..16]}"))})";
        return $"{who} does not chain to the cluster's CA: {string.Join("; ", chain.ChainStatus.Select(s => s.StatusInformation.Trim()))}";
    }

    /// <summary>
    /// Sets Orleans' TLS options: present <see cref="Certificate"/>, require the peer's in both directions, and accept
    /// it only when <see cref="Check"/> does; <paramref name="refused"/> hears why a peer was refused (for the log).
    /// </summary>
    public void Configure(TlsOptions options, Action<string> refused)
    {
        options.LocalCertificate = Certificate;
        options.RemoteCertificateMode = RemoteCertificateMode.RequireCertificate;
        options.ClientCertificateMode = RemoteCertificateMode.RequireCertificate;
        options.CheckCertificateRevocation = false;
        options.RemoteCertificateValidation = (certificate, _, _) =>
        {
            if (Check(certificate) is not { } reason) return true;
            Refuse(refused, reason);
            return false;
        };
        // A peer without a certificate never reaches the check above: say so too.
        options.OnAuthenticateAsServer = (_, server) =>
        {
            if (server.SslServerAuthenticationOptions is not System.Net.Security.SslServerAuthenticationOptions ssl) return;
            if (ssl.RemoteCertificateValidationCallback is not { } inner) return;
            ssl.RemoteCertificateValidationCallback = (sender, certificate, chain, errors) =>
            {
                if (certificate is null) Refuse(refused, "the peer presented no certificate");
                return inner(sender, certificate, chain, errors);
            };
        };
    }

    private readonly HashSet<string> _refusedReasons = [];

    /// <summary>Each reason once per process: a refused client retries the same handshake.</summary>
    private void Refuse(Action<string> refused, string reason)
    {
        lock (_refusedReasons)
        {
            if (_refusedReasons.Contains(reason)) return;
            // Bounded: a peer presenting ever new certificates must not grow the set without end (it is then logged each time).
            if (_refusedReasons.Count < 1024) _refusedReasons.Add(reason);
        }
        refused(reason);
    }
}

/// <summary>The TLS files of a silo or client are missing or unusable; the message names the file and the problem.</summary>
public sealed class TlsConfigurationException(string message) : Exception(message);
