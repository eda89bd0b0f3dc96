using Etcdserverpb;
using Grpc.Core;
using Gateway.LoadBalancer;
using static Gateway.Cluster.EtcdConnection;

namespace Gateway.Cluster;

/// <summary>
/// Kubernetes Services stored in etcd under <c>gateway/state/services/v1/&lt;cluster&gt;/</c>, one
/// key per service (<c>&lt;namespace&gt;/&lt;name&gt;</c>, no lease: a service outlives the node that
/// stored it). `gateway service apply/delete --kvstore` writes them; every node lists the prefix,
/// watches it from the list's revision + 1 (re-listing after an outage or a compaction) and raises
/// <see cref="Changed"/> with the whole set whenever it changes. A value that does not decode to one
/// valid Service, or a set whose names or VIP:ports collide, is logged with its key and reason and
/// <see cref="Changed"/> is not raised: the node keeps the service table it has.
/// Kept apart from <see cref="ClusterClient"/> (its own connection and watch) so services never
/// slow the node/ipcache/identity watch.
/// </summary>
public sealed class ServiceStore : IAsyncDisposable
{
    private static readonly TimeSpan MinBackoff = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(2);

    private readonly EtcdConnection _etcd;
    private readonly Action<string> _log;
    private readonly TimeProvider _clock;
    private readonly CancellationTokenSource _stop = new();
    private readonly SortedDictionary<string, byte[]> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _reported = new(StringComparer.Ordinal);
    private Task? _watchTask;
    private long _revision;
    private volatile IReadOnlyList<ServiceDefinition>? _current;

    private ServiceStore(EtcdConnection etcd, Action<string> log, TimeProvider clock)
    {
        _etcd = etcd;
        _log = log;
        _clock = clock;
        Prefix = PrefixFor(etcd.Options.ClusterName);
    }

    /// <summary>Opens a connection (no request yet). Throws <see cref="ClusterConfigException"/> for bad options.</summary>
    public static ServiceStore Open(KvStoreOptions options, Action<string> log, TimeProvider? clock = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(log);
        options.Validate();
        return new ServiceStore(new EtcdConnection(options), log, clock ?? TimeProvider.System);
    }

    /// <summary><c>gateway/state/services/v1/&lt;cluster&gt;/</c>.</summary>
    public static string PrefixFor(string cluster) => $"gateway/state/services/v1/{cluster}/";

    public string Prefix { get; }

    /// <summary>The services of the last consistent, valid set seen (null before the first list).</summary>
    public IReadOnlyList<ServiceDefinition>? Current => _current;

    /// <summary>Stored values refused since the last valid set (logged once each).</summary>
    public int Refused { get; private set; }

    /// <summary>Raised on the watch loop with every stored service, after each change that leaves a
    /// valid set; never concurrently with itself.</summary>
    public event Action<IReadOnlyList<ServiceDefinition>>? Changed;

    /// <summary>Stores services in one transaction: all or none. Throws
    /// <see cref="KvStoreUnavailableException"/> when etcd does not answer.</summary>
    public async Task PutAsync(IReadOnlyList<ServiceRecord> services, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(services);
        if (services.Count > ClusterClient.MaxTxnOps)
        {
            throw new ArgumentException($"{services.Count} services do not fit one etcd transaction (at most {ClusterClient.MaxTxnOps}); apply them in smaller sets", nameof(services));
        }
        var txn = new TxnRequest();
        foreach (var s in services)
        {
            try
            {
                ServiceRecords.Check(s);
            }
            catch (FormatException e)
            {
                throw new ArgumentException(e.Message, nameof(services));
            }
            txn.Success.Add(new RequestOp { RequestPut = new PutRequest { Key = Bytes(Prefix + s.Name), Value = Bytes(ServiceRecords.Encode(s)) } });
        }
        await CallAsync(() => _etcd.TxnAsync(txn, ct)).ConfigureAwait(false);
    }

    /// <summary>Deletes one stored service ("namespace/name"); false if there was none.</summary>
    public async Task<bool> DeleteAsync(string name, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        var txn = new TxnRequest();
        txn.Success.Add(new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = Bytes(Prefix + name) } });
        var r = await CallAsync(() => _etcd.TxnAsync(txn, ct)).ConfigureAwait(false);
        return r.Responses[0].ResponseDeleteRange.Deleted > 0;
    }

    /// <summary>The stored service names, read now.</summary>
    public async Task<IReadOnlyList<string>> ListNamesAsync(CancellationToken ct)
    {
        var (kvs, _) = await CallAsync(() => _etcd.ListAsync(Prefix, 0, ct)).ConfigureAwait(false);
        return kvs.Select(kv => kv.Key.ToStringUtf8()[Prefix.Length..]).ToList();
    }

    private async Task<T> CallAsync<T>(Func<Task<T>> call)
    {
        try
        {
            return await call().ConfigureAwait(false);
        }
        catch (RpcException e)
        {
            throw new KvStoreUnavailableException(_etcd.Describe(e), e);
        }
    }

    /// <summary>Starts listing and watching (once); runs until disposed, surviving etcd outages.</summary>
    public void StartWatching()
    {
        ObjectDisposedException.ThrowIf(_stop.IsCancellationRequested, this);
        _watchTask ??= Task.Run(() => WatchLoopAsync(_stop.Token));
    }

    private async Task WatchLoopAsync(CancellationToken ct)
    {
        var backoff = MinBackoff;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await ListAsync(ct).ConfigureAwait(false);
                await WatchOnceAsync(() => backoff = MinBackoff, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                _log($"service store: {(e is RpcException ? _etcd.Describe(e) : e.Message)}; keeping the services in force and retrying");
                try
                {
                    await Task.Delay(backoff, _clock, ct).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
            }
        }
    }

    private async Task ListAsync(CancellationToken ct)
    {
        var (kvs, revision) = await _etcd.ListAsync(Prefix, 0, ct).ConfigureAwait(false);
        _values.Clear();
        foreach (var kv in kvs)
        {
            _values[kv.Key.ToStringUtf8()] = kv.Value.ToByteArray();
        }
        _revision = revision;
        Publish();
    }

    /// <summary>One watch stream from the list's revision + 1; returns when etcd cancels it (compaction).</summary>
    private async Task WatchOnceAsync(Action healthy, CancellationToken ct)
    {
        using var call = _etcd.Watch.Watch(cancellationToken: ct);
        await call.RequestStream.WriteAsync(new WatchRequest
        {
            CreateRequest = new WatchCreateRequest { Key = Bytes(Prefix), RangeEnd = Bytes(KvKeys.RangeEnd(Prefix)), StartRevision = _revision + 1 },
        }, ct).ConfigureAwait(false);
        while (await call.ResponseStream.MoveNext(ct).ConfigureAwait(false))
        {
            var r = call.ResponseStream.Current;
            healthy();
            if (r.CompactRevision != 0 || r.Canceled)
            {
                return; // fell behind a compaction (or etcd cancelled): re-list
            }
            if (r.Events.Count == 0)
            {
                continue;
            }
            foreach (var ev in r.Events)
            {
                string key = ev.Kv.Key.ToStringUtf8();
                if (ev.Type == Mvccpb.Event.Types.EventType.Put)
                {
                    _values[key] = ev.Kv.Value.ToByteArray();
                }
                else
                {
                    _values.Remove(key);
                }
                _revision = Math.Max(_revision, ev.Kv.ModRevision);
            }
            Publish();
        }
        throw new RpcException(new Status(StatusCode.Unavailable, "etcd closed the watch stream"));
    }

    /// <summary>Decodes the whole set; raises <see cref="Changed"/> only if every value is valid.</summary>
    private void Publish()
    {
        var services = new List<ServiceDefinition>(_values.Count);
        int refused = 0;
        foreach (var (key, value) in _values)
        {
            try
            {
                var record = ServiceRecords.Decode(value);
                if (Prefix + record.Name != key)
                {
                    throw new FormatException($"record is service '{record.Name}', not the key's");
                }
                services.Add(ServiceRecords.Check(record));
                _reported.Remove(key);
            }
            catch (FormatException e)
            {
                refused++;
                if (_reported.Add(key))
                {
                    _log($"service store: {key}: {e.Message}; the previous services stay in force");
                }
            }
        }
        Refused = refused;
        if (refused > 0)
        {
            return;
        }
        try
        {
            ServiceLoader.CheckUnique(services);
        }
        catch (ServiceLoadException e)
        {
            _log($"service store: {e.Message}; the previous services stay in force");
            return;
        }
        _current = services;
        try
        {
            Changed?.Invoke(services);
        }
        catch (Exception e)
        {
            _log($"service store: a Changed handler failed: {e.GetType().Name}: {e.Message}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested)
        {
            return;
        }
        _stop.Cancel();
        if (_watchTask is not null)
        {
            try
            {
                await _watchTask.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
        _etcd.Dispose();
        _stop.Dispose();
    }
}
