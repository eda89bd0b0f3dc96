using Gateway.LoadBalancer;

namespace Gateway.Cluster;

/// <summary>
/// Kubernetes Services stored in etcd under <c>gateway/state/services/v1/&lt;cluster&gt;/</c>, one
/// key per service (<c>&lt;namespace&gt;/&lt;name&gt;</c>, no lease: a service outlives the node that
/// stored it). `gateway service apply/delete --kvstore` writes them; every node lists the prefix,
/// watches it from the list's revision + 1 (re-listing after an outage or a compaction) and raises
/// <see cref="Changed"/> with the whole set whenever it changes. A value that does not decode to one
/// valid Service, or a set whose names or VIP:ports collide, is logged with its key and reason and
/// <see cref="Changed"/> is not raised: the node keeps the service table it has.
/// Kept apart from <see cref="ClusterClient"/> (its own connection and watch, <see cref="PrefixWatch"/>)
/// so services never slow the node/ipcache/identity watch.
/// </summary>
public sealed class ServiceStore : IAsyncDisposable
{
    private readonly PrefixWatch _watch;
    private readonly Action<string> _log;
    private readonly HashSet<string> _reported = new(StringComparer.Ordinal);
    private volatile IReadOnlyList<ServiceDefinition>? _current;

    private ServiceStore(KvStoreOptions options, Action<string> log, TimeProvider clock)
    {
        _log = log;
        Prefix = PrefixFor(options.ClusterName);
        _watch = new PrefixWatch(options, Prefix, "service store", log, clock, Publish);
    }

    /// <summary>Opens a connection (no request yet). Throws <see cref="ClusterConfigException"/> for bad options.</summary>
    public static ServiceStore Open(KvStoreOptions options, Action<string> log, TimeProvider? clock = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(log);
        options.Validate();
        return new ServiceStore(options, log, clock ?? TimeProvider.System);
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
    public Task PutAsync(IReadOnlyList<ServiceRecord> services, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(services);
        if (services.Count > ClusterClient.MaxTxnOps)
        {
            throw new ArgumentException($"{services.Count} services do not fit one etcd transaction (at most {ClusterClient.MaxTxnOps}); apply them in smaller sets", nameof(services));
        }
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
        }
        return _watch.PutAllAsync(services.Select(s => (Prefix + s.Name, ServiceRecords.Encode(s))), ct);
    }

    /// <summary>Deletes one stored service ("namespace/name"); false if there was none.</summary>
    public Task<bool> DeleteAsync(string name, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        return _watch.DeleteAsync(Prefix + name, ct);
    }

    /// <summary>The stored service names, read now.</summary>
    public async Task<IReadOnlyList<string>> ListNamesAsync(CancellationToken ct) =>
        (await _watch.ReadAllAsync(ct).ConfigureAwait(false)).Select(kv => kv.Key[Prefix.Length..]).ToList();

    /// <summary>Starts listing and watching (once); runs until disposed, surviving etcd outages.</summary>
    public void StartWatching() => _watch.Start();

    /// <summary>Decodes the whole set; raises <see cref="Changed"/> only if every value is valid.</summary>
    private void Publish(IReadOnlyDictionary<string, byte[]> values)
    {
        var services = new List<ServiceDefinition>(values.Count);
        int refused = 0;
        foreach (var (key, value) in values)
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

    public ValueTask DisposeAsync() => _watch.DisposeAsync();
}
