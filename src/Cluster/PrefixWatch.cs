using Etcdserverpb;
using Grpc.Core;
using static Gateway.Cluster.EtcdConnection;

namespace Gateway.Cluster;

/// <summary>
/// Follows every key under one etcd prefix: lists it, watches it from the list's revision + 1, and
/// re-lists after an outage or a compaction, backing off from 100 ms to 2 s between attempts. After
/// every list and every batch of watch events it hands the whole raw set (key to value, ordinal
/// order) to its owner, which decodes it. Used by the stores of cluster-wide objects that live
/// outside <see cref="ClusterClient"/>'s snapshot (<see cref="ServiceStore"/>,
/// <see cref="BandwidthStore"/>), each on its own connection so they never slow the
/// node/ipcache/identity watch.
/// </summary>
internal sealed class PrefixWatch : IAsyncDisposable
{
    private static readonly TimeSpan MinBackoff = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(2);

    private readonly string _prefix;
    private readonly string _name;
    private readonly Action<string> _log;
    private readonly TimeProvider _clock;
    private readonly Action<IReadOnlyDictionary<string, byte[]>> _publish;
    private readonly CancellationTokenSource _stop = new();
    private readonly SortedDictionary<string, byte[]> _values = new(StringComparer.Ordinal);
    private Task? _watchTask;
    private long _revision;

    /// <param name="name">How log lines name the store, e.g. "service store".</param>
    /// <param name="publish">Called on the watch loop with the whole set after each change; never concurrently with itself.</param>
    public PrefixWatch(KvStoreOptions options, string prefix, string name, Action<string> log, TimeProvider clock,
        Action<IReadOnlyDictionary<string, byte[]>> publish)
    {
        Etcd = new EtcdConnection(options);
        _prefix = prefix;
        _name = name;
        _log = log;
        _clock = clock;
        _publish = publish;
    }

    public EtcdConnection Etcd { get; }

    /// <summary>Runs one request, turning an RPC failure into <see cref="KvStoreUnavailableException"/>.</summary>
    public async Task<T> CallAsync<T>(Func<Task<T>> call)
    {
        try
        {
            return await call().ConfigureAwait(false);
        }
        catch (RpcException e)
        {
            throw new KvStoreUnavailableException(Etcd.Describe(e), e);
        }
    }

    /// <summary>Runs one transaction (all or none).</summary>
    public Task<TxnResponse> TxnAsync(TxnRequest txn, CancellationToken ct) => CallAsync(() => Etcd.TxnAsync(txn, ct));

    /// <summary>Stores key/value pairs in one transaction: all or none.</summary>
    public Task PutAllAsync(IEnumerable<(string Key, string Value)> pairs, CancellationToken ct)
    {
        var txn = new TxnRequest();
        foreach (var (key, value) in pairs)
        {
            txn.Success.Add(Put(key, value));
        }
        return TxnAsync(txn, ct);
    }

    public static RequestOp Put(string key, string value) => new() { RequestPut = new PutRequest { Key = Bytes(key), Value = Bytes(value) } };

    public static RequestOp Delete(string key) => new() { RequestDeleteRange = new DeleteRangeRequest { Key = Bytes(key) } };

    /// <summary>Deletes one key; false if it was not there.</summary>
    public async Task<bool> DeleteAsync(string key, CancellationToken ct)
    {
        var txn = new TxnRequest();
        txn.Success.Add(Delete(key));
        var r = await TxnAsync(txn, ct).ConfigureAwait(false);
        return r.Responses[0].ResponseDeleteRange.Deleted > 0;
    }

    /// <summary>Every key and value under the prefix, read now.</summary>
    public async Task<IReadOnlyList<(string Key, byte[] Value)>> ReadAllAsync(CancellationToken ct)
    {
        var (kvs, _) = await CallAsync(() => Etcd.ListAsync(_prefix, 0, ct)).ConfigureAwait(false);
        return kvs.Select(kv => (kv.Key.ToStringUtf8(), kv.Value.ToByteArray())).ToList();
    }

    /// <summary>Starts listing and watching (once); runs until disposed, surviving etcd outages.</summary>
    public void Start()
    {
        ObjectDisposedException.ThrowIf(_stop.IsCancellationRequested, this);
        _watchTask ??= Task.Run(() => LoopAsync(_stop.Token));
    }

    private async Task LoopAsync(CancellationToken ct)
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
                _log($"{_name}: {(e is RpcException ? Etcd.Describe(e) : e.Message)}; keeping what is in force and retrying");
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
        var (kvs, revision) = await Etcd.ListAsync(_prefix, 0, ct).ConfigureAwait(false);
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
        using var call = Etcd.Watch.Watch(cancellationToken: ct);
        await call.RequestStream.WriteAsync(new WatchRequest
        {
            CreateRequest = new WatchCreateRequest { Key = Bytes(_prefix), RangeEnd = Bytes(KvKeys.RangeEnd(_prefix)), StartRevision = _revision + 1 },
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

    private void Publish()
    {
        try
        {
            _publish(_values);
        }
        catch (Exception e)
        {
            // A decoder or a listener that fails must not end the watch.
            _log($"{_name}: applying the stored set failed: {e.GetType().Name}: {e.Message}");
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
        Etcd.Dispose();
        _stop.Dispose();
    }
}
