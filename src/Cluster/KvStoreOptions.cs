namespace Gateway.Cluster;

/// <summary>
/// Where the cluster's etcd is and how to talk to it: the daemon's <c>KVStore</c>,
/// <c>KVStoreCA</c>, <c>KVStoreCert</c>, <c>KVStoreKey</c> and <c>KVStoreLeaseTTL</c> settings and
/// the CLI's <c>--kvstore*</c> options. Validated once, up front, so a typo is a one-line
/// <see cref="ClusterConfigException"/> at start-up rather than a gRPC error minutes later.
/// </summary>
public sealed class KvStoreOptions
{
    /// <summary>The shortest lease etcd grants is 1 s; below 2 s a keep-alive every TTL/3 has no slack.</summary>
    public static readonly TimeSpan MinLeaseTtl = TimeSpan.FromSeconds(2);

    /// <summary>etcd endpoints of one cluster, all http:// or all https://. The client balances
    /// over them and skips those that do not answer.</summary>
    public required IReadOnlyList<Uri> Endpoints { get; init; }

    /// <summary>PEM file of the CA that signed etcd's server certificate (https endpoints).</summary>
    public string? CaFile { get; init; }

    /// <summary>PEM client certificate for etcd's <c>--client-cert-auth</c>; needs <see cref="KeyFile"/>.</summary>
    public string? CertFile { get; init; }

    /// <summary>PEM private key of <see cref="CertFile"/>.</summary>
    public string? KeyFile { get; init; }

    /// <summary>TTL of the lease that keeps this node's keys alive: how long a crashed node lingers.</summary>
    public TimeSpan LeaseTtl { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>The <c>&lt;cluster&gt;</c> path element of node, ipcache and policy keys.</summary>
    public string ClusterName { get; init; } = "default";

    /// <summary>Deadline of each request to etcd (a list, a put, a transaction). An unreachable
    /// etcd turns into an error after this long instead of a hang.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>True when the endpoints are https://.</summary>
    public bool UseTls => Endpoints.Count > 0 && Endpoints[0].Scheme == Uri.UriSchemeHttps;

    /// <summary>"http://a:2379,http://b:2379" as the text the user wrote, for messages.</summary>
    public string EndpointText => string.Join(',', Endpoints.Select(e => e.GetLeftPart(UriPartial.Authority)));

    /// <summary>
    /// Parses the user's settings. <paramref name="endpoints"/> is a comma-separated list of
    /// http:// or https:// URLs with a port (2379 when omitted). Files must exist and be
    /// readable; a certificate needs its key and https endpoints.
    /// </summary>
    public static KvStoreOptions Parse(string endpoints, string? ca, string? cert, string? key, TimeSpan? leaseTtl = null, string? cluster = null)
    {
        if (string.IsNullOrWhiteSpace(endpoints))
        {
            throw new ClusterConfigException("KVStore: no etcd endpoint given (expected e.g. http://127.0.0.1:2379)");
        }
        var list = new List<Uri>();
        foreach (string raw in endpoints.Split(','))
        {
            string text = raw.Trim();
            if (text.Length == 0)
            {
                throw new ClusterConfigException($"KVStore: empty endpoint in '{endpoints}'");
            }
            if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps) || uri.Host.Length == 0)
            {
                throw new ClusterConfigException($"KVStore: '{text}' is not an http:// or https:// URL");
            }
            if (uri.AbsolutePath != "/" || uri.Query.Length > 0 || uri.UserInfo.Length > 0)
            {
                throw new ClusterConfigException($"KVStore: '{text}' must be scheme://host:port with no path, query or user");
            }
            if (uri.IsDefaultPort && !text.Contains($":{uri.Port}", StringComparison.Ordinal))
            {
                uri = new UriBuilder(uri) { Port = 2379 }.Uri;
            }
            list.Add(uri);
        }
        if (list.Select(u => u.Scheme).Distinct().Count() > 1)
        {
            throw new ClusterConfigException($"KVStore: mixes http:// and https:// endpoints ('{endpoints}'); use one scheme");
        }
        bool tls = list[0].Scheme == Uri.UriSchemeHttps;
        if (!tls && (ca ?? cert ?? key) is not null)
        {
            throw new ClusterConfigException("KVStoreCA/KVStoreCert/KVStoreKey need https:// endpoints");
        }
        if ((cert is null) != (key is null))
        {
            throw new ClusterConfigException(cert is null ? "KVStoreKey given without KVStoreCert" : "KVStoreCert given without KVStoreKey");
        }
        CheckFile("KVStoreCA", ca);
        CheckFile("KVStoreCert", cert);
        CheckFile("KVStoreKey", key);
        var ttl = leaseTtl ?? TimeSpan.FromSeconds(15);
        if (ttl < MinLeaseTtl || ttl > TimeSpan.FromHours(1) || ttl.Ticks % TimeSpan.TicksPerSecond != 0)
        {
            throw new ClusterConfigException($"KVStoreLeaseTTL: {ttl.TotalSeconds} s is out of range (whole seconds, 2 to 3600)");
        }
        string name = cluster ?? "default";
        if (!KvKeys.IsValidName(name))
        {
            throw new ClusterConfigException($"cluster name '{name}' is not valid (1-63 of a-z, 0-9, '-', '.', '_')");
        }
        return new KvStoreOptions { Endpoints = list, CaFile = ca, CertFile = cert, KeyFile = key, LeaseTtl = ttl, ClusterName = name };
    }

    /// <summary>Checks an options object built with an initializer rather than <see cref="Parse"/>.</summary>
    internal void Validate()
    {
        if (Endpoints is null || Endpoints.Count == 0)
        {
            throw new ClusterConfigException("KVStore: no etcd endpoint given");
        }
        _ = Parse(string.Join(',', Endpoints.Select(e => e.GetLeftPart(UriPartial.Authority))), CaFile, CertFile, KeyFile, LeaseTtl, ClusterName);
        if (RequestTimeout <= TimeSpan.Zero)
        {
            throw new ClusterConfigException("kvstore request timeout must be positive");
        }
    }

    private static void CheckFile(string setting, string? path)
    {
        if (path is null)
        {
            return;
        }
        if (!File.Exists(path))
        {
            throw new ClusterConfigException($"{setting}: {path}: no such file");
        }
        try
        {
            using var _ = File.OpenRead(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ClusterConfigException($"{setting}: {path}: {e.Message}");
        }
    }
}

/// <summary>The kvstore settings are wrong (bad URL, missing file, bad TTL). The message is one line
/// naming the setting; the CLI prints it and exits 2.</summary>
public sealed class ClusterConfigException(string message) : Exception(message);

/// <summary>etcd did not answer within the request deadline (down, unreachable, TLS refused). The
/// message is one line naming the endpoints and the cause; the CLI prints it and exits 1.</summary>
public sealed class KvStoreUnavailableException(string message, Exception? inner = null) : Exception(message, inner);
