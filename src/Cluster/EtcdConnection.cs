using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using dotnet_etcd;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;

namespace Gateway.Cluster;

/// <summary>
/// One gRPC channel to the etcd endpoints, made by dotnet-etcd (static resolver + round-robin
/// over every endpoint, so a dead first endpoint is skipped), with this project's TLS (a private
/// CA, a client certificate) and shorter HTTP/2 keep-alive pings so a silent etcd is noticed in
/// seconds. The raw etcd v3 gRPC stubs dotnet-etcd generates are used for every call: the
/// watch and lease streams need their compaction, cancel and TTL fields, which dotnet-etcd's
/// callback helpers hide. Every unary call carries a deadline of <see cref="KvStoreOptions.RequestTimeout"/>.
/// </summary>
internal sealed class EtcdConnection : IDisposable
{
    private readonly EtcdClient _client;
    private readonly X509Certificate2Collection? _trust;
    private readonly X509Certificate2? _clientCert;

    public EtcdConnection(KvStoreOptions options)
    {
        Options = options;
        if (options.UseTls)
        {
            (_trust, _clientCert) = LoadTls(options);
        }
        Action<Grpc.Net.Client.GrpcChannelOptions> channel = o =>
        {
            if (o.HttpHandler is SocketsHttpHandler h)
            {
                h.KeepAlivePingDelay = TimeSpan.FromSeconds(5);
                h.KeepAlivePingTimeout = TimeSpan.FromSeconds(5);
                h.ConnectTimeout = options.RequestTimeout;
            }
            o.MaxReceiveMessageSize = 64 * 1024 * 1024;
            // dotnet-etcd retries UNAVAILABLE 5 times with 1-5 s back-off, which outlasts our deadline
            // and turns "TLS refused" or "connection refused" into a bare DEADLINE_EXCEEDED. Three
            // quick attempts still ride over a dead endpoint to a live one, and fail with the reason.
            o.ServiceConfig ??= new Grpc.Net.Client.Configuration.ServiceConfig();
            o.ServiceConfig.MethodConfigs.Clear();
            o.ServiceConfig.MethodConfigs.Add(new Grpc.Net.Client.Configuration.MethodConfig
            {
                Names = { Grpc.Net.Client.Configuration.MethodName.Default },
                RetryPolicy = new Grpc.Net.Client.Configuration.RetryPolicy
                {
                    MaxAttempts = 3,
                    InitialBackoff = TimeSpan.FromMilliseconds(200),
                    MaxBackoff = TimeSpan.FromSeconds(1),
                    BackoffMultiplier = 2,
                    RetryableStatusCodes = { StatusCode.Unavailable },
                },
            });
        };
        string endpoints = string.Join(',', options.Endpoints.Select(e => $"{e.Host}:{e.Port}"));
        _client = options.UseTls
            ? new EtcdClient(endpoints, ConfigureTls, port: 2379, configureChannelOptions: channel)
            : new EtcdClient(endpoints, configureSslOptions: null, port: 2379, configureChannelOptions: channel);
        var c = _client.GetConnection();
        Kv = c.KVClient;
        Watch = c.WatchClient;
        Lease = c.LeaseClient;
    }

    public KvStoreOptions Options { get; }
    public KV.KVClient Kv { get; }
    public Etcdserverpb.Watch.WatchClient Watch { get; }
    public Etcdserverpb.Lease.LeaseClient Lease { get; }

    public DateTime Deadline => DateTime.UtcNow + Options.RequestTimeout;

    public static ByteString Bytes(string s) => ByteString.CopyFromUtf8(s);

    public async Task<TxnResponse> TxnAsync(TxnRequest txn, CancellationToken ct) =>
        await Kv.TxnAsync(txn, deadline: Deadline, cancellationToken: ct).ConfigureAwait(false);

    public async Task<RangeResponse> RangeAsync(RangeRequest r, CancellationToken ct) =>
        await Kv.RangeAsync(r, deadline: Deadline, cancellationToken: ct).ConfigureAwait(false);

    /// <summary>Every key under <paramref name="prefix"/> at <paramref name="revision"/> (0 = now),
    /// in pages so a 50,000-key list never needs one giant message.</summary>
    public async Task<(List<Mvccpb.KeyValue> Kvs, long Revision)> ListAsync(string prefix, long revision, CancellationToken ct, int pageSize = 5000)
    {
        var all = new List<Mvccpb.KeyValue>();
        var end = Bytes(KvKeys.RangeEnd(prefix));
        var from = Bytes(prefix);
        while (true)
        {
            var resp = await RangeAsync(new RangeRequest { Key = from, RangeEnd = end, Revision = revision, Limit = pageSize }, ct).ConfigureAwait(false);
            if (revision == 0)
            {
                revision = resp.Header.Revision;
            }
            all.AddRange(resp.Kvs);
            if (!resp.More || resp.Kvs.Count == 0)
            {
                return (all, revision);
            }
            var last = resp.Kvs[^1].Key.ToByteArray();
            from = ByteString.CopyFrom([.. last, 0]);
        }
    }

    /// <summary>
    /// Every key under <paramref name="prefix"/> at <paramref name="revision"/> (0 = now), page by
    /// page to <paramref name="onPage"/>, asking etcd for the next page before handing over the
    /// current one, so etcd reads while the caller decodes. Returns the list's revision.
    /// </summary>
    public async Task<long> ListPagesAsync(string prefix, long revision, Action<RangeResponse> onPage, CancellationToken ct, int pageSize = 5000)
    {
        var end = Bytes(KvKeys.RangeEnd(prefix));
        var resp = await RangeAsync(new RangeRequest { Key = Bytes(prefix), RangeEnd = end, Revision = revision, Limit = pageSize }, ct).ConfigureAwait(false);
        if (revision == 0)
        {
            revision = resp.Header.Revision;
        }
        while (true)
        {
            Task<RangeResponse>? next = null;
            if (resp.More && resp.Kvs.Count > 0)
            {
                var from = ByteString.CopyFrom([.. resp.Kvs[^1].Key.Span, 0]);
                next = RangeAsync(new RangeRequest { Key = from, RangeEnd = end, Revision = revision, Limit = pageSize }, ct);
            }
            try
            {
                onPage(resp);
            }
            catch
            {
                if (next is not null)
                {
                    await ((Task)next).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                }
                throw;
            }
            if (next is null)
            {
                return revision;
            }
            resp = await next.ConfigureAwait(false);
        }
    }

    /// <summary>A one-line reason for a failed call: unreachable, deadline, TLS refused.</summary>
    public string Describe(Exception e)
    {
        var rpc = e as RpcException ?? e.InnerException as RpcException;
        Exception? root = rpc?.Status.DebugException ?? (rpc is null ? e : null);
        for (var x = root; x is not null; x = x.InnerException)
        {
            if (x is AuthenticationException)
            {
                return $"TLS handshake with etcd at {Options.EndpointText} failed ({Flatten(x.Message)}); check KVStoreCA, and KVStoreCert/KVStoreKey if etcd requires client certificates";
            }
        }
        if (rpc is null)
        {
            return $"etcd at {Options.EndpointText}: {Flatten(e.Message)}";
        }
        string detail = Flatten(root?.GetBaseException().Message ?? rpc.Status.Detail);
        bool tlsHint = detail.Contains("SSL", StringComparison.OrdinalIgnoreCase) || detail.Contains("certificate", StringComparison.OrdinalIgnoreCase) ||
            (Options.UseTls && _clientCert is null && detail.Contains("reset", StringComparison.OrdinalIgnoreCase));
        return rpc.StatusCode switch
        {
            StatusCode.DeadlineExceeded => $"etcd at {Options.EndpointText} is unreachable (no answer within {Options.RequestTimeout.TotalSeconds:0.#} s)",
            StatusCode.Unavailable when tlsHint => $"TLS connection to etcd at {Options.EndpointText} failed ({detail}); check KVStoreCA, and KVStoreCert/KVStoreKey if etcd requires client certificates",
            StatusCode.Unavailable => $"etcd at {Options.EndpointText} is unreachable ({detail})",
            _ => $"etcd at {Options.EndpointText}: {rpc.StatusCode}: {Flatten(rpc.Status.Detail)}",
        };
    }

    private static string Flatten(string s) => s.ReplaceLineEndings(" ").Trim();

    public void Dispose()
    {
        _client.Dispose();
        _clientCert?.Dispose();
        if (_trust is not null)
        {
            foreach (var c in _trust)
            {
                c.Dispose();
            }
        }
    }

    private void ConfigureTls(SslClientAuthenticationOptions ssl)
    {
        if (_clientCert is not null)
        {
            ssl.ClientCertificates = [_clientCert];
            ssl.LocalCertificateSelectionCallback = (_, _, _, _, _) => _clientCert;
        }
        if (_trust is not null)
        {
            var trust = _trust;
            ssl.RemoteCertificateValidationCallback = (_, cert, _, errors) =>
            {
                if (cert is null || (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) != SslPolicyErrors.None)
                {
                    return false; // no certificate, or its name does not match the endpoint
                }
                using var chain = new X509Chain();
                chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                chain.ChainPolicy.CustomTrustStore.AddRange(trust);
                chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                return chain.Build(cert as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(cert.GetRawCertData()));
            };
        }
    }

    private static (X509Certificate2Collection? Trust, X509Certificate2? Client) LoadTls(KvStoreOptions o)
    {
        X509Certificate2Collection? trust = null;
        X509Certificate2? client = null;
        try
        {
            if (o.CaFile is not null)
            {
                trust = [];
                trust.ImportFromPemFile(o.CaFile);
                if (trust.Count == 0)
                {
                    throw new ClusterConfigException($"KVStoreCA: {o.CaFile}: no PEM certificate in it");
                }
            }
        }
        catch (CryptographicException e)
        {
            throw new ClusterConfigException($"KVStoreCA: {o.CaFile}: {Flatten(e.Message)}");
        }
        try
        {
            if (o.CertFile is not null)
            {
                using var pem = X509Certificate2.CreateFromPemFile(o.CertFile, o.KeyFile);
                // An ephemeral PEM key cannot be used by SslStream on every platform; round-trip through PKCS#12.
                client = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
            }
        }
        catch (CryptographicException e)
        {
            throw new ClusterConfigException($"KVStoreCert/KVStoreKey: {o.CertFile} / {o.KeyFile}: {Flatten(e.Message)}");
        }
        return (trust, client);
    }
}
