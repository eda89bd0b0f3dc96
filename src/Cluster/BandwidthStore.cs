using System.Collections.Frozen;
using Etcdserverpb;
using Gateway.Policy;

namespace Gateway.Cluster;

/// <summary>
/// Pods' bandwidth annotations stored in etcd under <c>gateway/state/bandwidth/v1/&lt;cluster&gt;/</c>,
/// one key per pod (<c>&lt;namespace&gt;/&lt;name&gt;</c>, no lease: the limit outlives the command
/// that set it), the cluster-mode counterpart of the <c>annotations:</c> of an endpoints file.
/// `gateway bandwidth apply/delete --kvstore` writes them; every node follows the prefix
/// (<see cref="PrefixWatch"/>, its own connection and watch) and raises <see cref="Changed"/> with
/// the limits of every stored pod whenever they change. Each stored record stands alone: one that
/// does not decode, or whose name is not its key's, is logged once with its key and reason and
/// counts as absent; a value that is not a rate is logged and that annotation ignored (the pod's
/// other annotation still counts), as a node treats its endpoints file.
/// </summary>
public sealed class BandwidthStore : IAsyncDisposable
{
    private readonly PrefixWatch _watch;
    private readonly Action<string> _log;
    private readonly Dictionary<string, string> _reported = new(StringComparer.Ordinal);
    private volatile IReadOnlyDictionary<string, BandwidthLimits>? _current;

    private BandwidthStore(KvStoreOptions options, Action<string> log, TimeProvider clock)
    {
        _log = log;
        Prefix = PrefixFor(options.ClusterName);
        _watch = new PrefixWatch(options, Prefix, "bandwidth store", log, clock, Publish);
    }

    /// <summary>Opens a connection (no request yet). Throws <see cref="ClusterConfigException"/> for bad options.</summary>
    public static BandwidthStore Open(KvStoreOptions options, Action<string> log, TimeProvider? clock = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(log);
        options.Validate();
        return new BandwidthStore(options, log, clock ?? TimeProvider.System);
    }

    /// <summary><c>gateway/state/bandwidth/v1/&lt;cluster&gt;/</c>.</summary>
    public static string PrefixFor(string cluster) => $"gateway/state/bandwidth/v1/{cluster}/";

    public string Prefix { get; }

    /// <summary>The stored limits by pod (<c>namespace/name</c>) after the last look at the store
    /// (null before the first list); a pod whose record sets no valid rate is absent.</summary>
    public IReadOnlyDictionary<string, BandwidthLimits>? Current => _current;

    /// <summary>Stored records or annotation values ignored at the last look (logged once each).</summary>
    public int Refused { get; private set; }

    /// <summary>Raised on the watch loop with <see cref="Current"/> after every change; never
    /// concurrently with itself.</summary>
    public event Action<IReadOnlyDictionary<string, BandwidthLimits>>? Changed;

    /// <summary>
    /// Stores what <paramref name="records"/> say in one transaction, all or none: a record with an
    /// annotation replaces the pod's stored one; a record without any deletes it. Returns the pods
    /// whose stored record was deleted that way. Throws <see cref="ArgumentException"/> for a record
    /// <see cref="BandwidthRecords.Check"/> refuses or too many records, and
    /// <see cref="KvStoreUnavailableException"/> when etcd does not answer.
    /// </summary>
    public async Task<IReadOnlyList<string>> ApplyAsync(IReadOnlyList<BandwidthRecord> records, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(records);
        if (records.Count > ClusterClient.MaxTxnOps)
        {
            throw new ArgumentException($"{records.Count} pods do not fit one etcd transaction (at most {ClusterClient.MaxTxnOps}); apply them in smaller sets", nameof(records));
        }
        var txn = new TxnRequest();
        foreach (var r in records)
        {
            try
            {
                BandwidthRecords.Check(r);
            }
            catch (FormatException e)
            {
                throw new ArgumentException($"{r.Name}: {e.Message}", nameof(records));
            }
            txn.Success.Add(r.Egress is null && r.Ingress is null
                ? PrefixWatch.Delete(Prefix + r.Name)
                : PrefixWatch.Put(Prefix + r.Name, BandwidthRecords.Encode(r)));
        }
        var response = await _watch.TxnAsync(txn, ct).ConfigureAwait(false);
        var cleared = new List<string>();
        for (int i = 0; i < records.Count; i++)
        {
            if (response.Responses[i].ResponseCase == ResponseOp.ResponseOneofCase.ResponseDeleteRange && response.Responses[i].ResponseDeleteRange.Deleted > 0)
            {
                cleared.Add(records[i].Name);
            }
        }
        return cleared;
    }

    /// <summary>Deletes one pod's stored record (<c>namespace/name</c>); false if there was none.</summary>
    public Task<bool> DeleteAsync(string name, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        return _watch.DeleteAsync(Prefix + name, ct);
    }

    /// <summary>The stored records, read now, in key order; values that do not decode are left out
    /// and described in <paramref name="problems"/> by key.</summary>
    public async Task<IReadOnlyList<BandwidthRecord>> ReadAsync(List<string> problems, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(problems);
        var records = new List<BandwidthRecord>();
        foreach (var (key, value) in await _watch.ReadAllAsync(ct).ConfigureAwait(false))
        {
            try
            {
                records.Add(DecodeAt(key, value));
            }
            catch (FormatException e)
            {
                problems.Add($"{key}: {e.Message}");
            }
        }
        return records;
    }

    /// <summary>Starts listing and watching (once); runs until disposed, surviving etcd outages.</summary>
    public void StartWatching() => _watch.Start();

    private BandwidthRecord DecodeAt(string key, byte[] value)
    {
        var record = BandwidthRecords.Decode(value);
        if (Prefix + record.Name != key)
        {
            throw new FormatException($"record is pod '{record.Name}', not the key's");
        }
        return record;
    }

    private void Publish(IReadOnlyDictionary<string, byte[]> values)
    {
        var problemsByKey = new Dictionary<string, string>(StringComparer.Ordinal);
        var records = new List<BandwidthRecord>(values.Count);
        foreach (var (key, value) in values)
        {
            try
            {
                records.Add(DecodeAt(key, value));
            }
            catch (FormatException e)
            {
                problemsByKey[key] = e.Message + "; the record is ignored";
            }
        }
        var limits = BandwidthRecords.Limits(records, (record, problem) => problemsByKey[Prefix + record.Name] = problem);
        foreach (var (key, problem) in problemsByKey)
        {
            if (!_reported.TryGetValue(key, out string? said) || said != problem)
            {
                _log($"bandwidth store: {key}: {problem}");
            }
        }
        _reported.Clear();
        foreach (var (key, problem) in problemsByKey)
        {
            _reported[key] = problem;
        }
        Refused = problemsByKey.Count;
        var current = limits.ToFrozenDictionary(StringComparer.Ordinal);
        _current = current;
        Changed?.Invoke(current);
    }

    public ValueTask DisposeAsync() => _watch.DisposeAsync();
}
