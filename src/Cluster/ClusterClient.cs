using System.Globalization;
using Etcdserverpb;
using Grpc.Core;
using static Gateway.Cluster.EtcdConnection;

namespace Gateway.Cluster;

/// <summary>
/// A node's view of, and its writes to, the cluster store in etcd. It lists the node, ipcache,
/// identity and policy prefixes once (<see cref="Current"/>), then watches them from the list's
/// revision + 1; when the watch breaks (etcd down, restarted, a compaction past the watch) it
/// re-lists and diffs, raising <see cref="Changed"/> only if a decoded record really differs.
/// The node's own keys live under one lease, kept alive here; when the lease is lost (an
/// outage longer than its TTL) a new one is granted and every own key is put again.
/// </summary>
public sealed partial class ClusterClient : IAsyncDisposable
{
    private static readonly TimeSpan MinBackoff = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(2);

    /// <summary>etcd's default --max-txn-ops is 128; stay below it.</summary>
    internal const int MaxTxnOps = 120;

    private readonly EtcdConnection _etcd;
    private readonly KvStoreOptions _options;
    private readonly KvKeys _keys;
    private readonly Action<string> _log;
    private readonly TimeProvider _clock;
    private readonly ClusterState _state;
    private readonly object _stateLock = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly SemaphoreSlim _gate = new(1, 1);
    private volatile ClusterSnapshot _current = ClusterSnapshot.Empty;
    private volatile bool _up = true;
    private Task? _watchTask;
    private int _watching;
    private long _watchEvents;
    private long _watchBytes;
    private long _resyncs;

    private ClusterClient(EtcdConnection etcd, Action<string> log, TimeProvider clock)
    {
        _etcd = etcd;
        _options = etcd.Options;
        _keys = new KvKeys(_options.ClusterName);
        _log = log;
        _clock = clock;
        _state = new ClusterState(_keys, log);
    }

    /// <summary>
    /// Connects and lists the cluster state once (so <see cref="Current"/> is filled on return).
    /// Throws <see cref="ClusterConfigException"/> for bad options or TLS files and
    /// <see cref="KvStoreUnavailableException"/> when etcd does not answer within
    /// <see cref="KvStoreOptions.RequestTimeout"/>.
    /// </summary>
    public static async Task<ClusterClient> ConnectAsync(KvStoreOptions options, Action<string> log, TimeProvider? clock = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(log);
        options.Validate();
        var etcd = new EtcdConnection(options);
        var client = new ClusterClient(etcd, log, clock ?? TimeProvider.System);
        try
        {
            await client.ResyncAsync(raise: false, ct).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            await client.DisposeAsync().ConfigureAwait(false);
            if (e is RpcException)
            {
                throw new KvStoreUnavailableException(etcd.Describe(e), e);
            }
            throw;
        }
        return client;
    }

    public KvStoreOptions Options => _options;

    /// <summary>False while etcd is unreachable (the daemon's gateway_kvstore_up metric).</summary>
    public bool IsUp => _up;

    /// <summary>Key events received on the watch since connecting (puts and deletes).</summary>
    public long WatchEventsReceived => Interlocked.Read(ref _watchEvents);

    /// <summary>Protobuf bytes of the watch responses received (gRPC/HTTP/2 framing excluded).</summary>
    public long WatchBytesReceived => Interlocked.Read(ref _watchBytes);

    /// <summary>Full re-lists after connecting (outage, compaction).</summary>
    public long Resyncs => Interlocked.Read(ref _resyncs);

    /// <summary>Time the last full list spent decoding and building the snapshot (the rest of it was
    /// etcd and the network).</summary>
    public TimeSpan LastListDecodeTime { get; private set; }

    /// <summary>The latest decoded state; replaced whole, never mutated.</summary>
    public ClusterSnapshot Current => _current;

    /// <summary>Raised on the watch loop after each batch of events that changed something and
    /// after a re-list that did; never concurrently with itself. Handlers must not block long.</summary>
    public event Action<ClusterSnapshot>? Changed;

    /// <summary>
    /// Starts the watch loop (once; later calls return at once). The loop runs until
    /// <paramref name="ct"/> is cancelled or the client is disposed, surviving etcd outages.
    /// </summary>
    public Task StartWatchingAsync(CancellationToken ct)
    {
        ObjectDisposedException.ThrowIf(_stop.IsCancellationRequested, this);
        if (Interlocked.Exchange(ref _watching, 1) == 1)
        {
            return Task.CompletedTask;
        }
        var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, _stop.Token);
        _watchTask = Task.Run(async () =>
        {
            using (linked)
            {
                await WatchLoopAsync(linked.Token).ConfigureAwait(false);
            }
        }, CancellationToken.None);
        return Task.CompletedTask;
    }

    // ---------------------------------------------------------------- list, watch, resync

    private async Task WatchLoopAsync(CancellationToken ct)
    {
        var backoff = MinBackoff;
        bool relist = false;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                if (relist)
                {
                    await ResyncAsync(raise: true, ct).ConfigureAwait(false);
                    Interlocked.Increment(ref _resyncs);
                }
                relist = true;
                await WatchOnceAsync(_current.Revision + 1, () => backoff = MinBackoff, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e)
            {
                // Nothing may end the loop but cancellation: etcd errors mark it down, anything
                // else is logged, and both are retried after a back-off.
                if (e is RpcException or KvStoreUnavailableException or OperationCanceledException or IOException)
                {
                    MarkDown(e);
                }
                else
                {
                    _log($"kvstore: watch loop error {e.GetType().Name}: {e.Message}; re-listing");
                }
                try
                {
                    await Task.Delay(backoff, _clock, ct).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
            }
        }
    }

    /// <summary>One watch stream over the four prefixes from <paramref name="fromRevision"/>.
    /// Returns when etcd cancels it (compaction); throws when the stream breaks.</summary>
    private async Task WatchOnceAsync(long fromRevision, Action healthy, CancellationToken ct)
    {
        using var call = _etcd.Watch.Watch(cancellationToken: ct);
        foreach (string prefix in _state.Prefixes)
        {
            await call.RequestStream.WriteAsync(new WatchRequest
            {
                CreateRequest = new WatchCreateRequest { Key = Bytes(prefix), RangeEnd = Bytes(KvKeys.RangeEnd(prefix)), StartRevision = fromRevision },
            }, ct).ConfigureAwait(false);
        }
        while (await call.ResponseStream.MoveNext(ct).ConfigureAwait(false))
        {
            var r = call.ResponseStream.Current;
            MarkUp();
            healthy();
            Interlocked.Add(ref _watchBytes, r.CalculateSize());
            Interlocked.Add(ref _watchEvents, r.Events.Count);
            if (r.CompactRevision != 0)
            {
                _log($"kvstore: watch from revision {fromRevision} fell behind etcd's compaction (revision {r.CompactRevision}); re-listing");
                return;
            }
            if (r.Canceled)
            {
                _log($"kvstore: etcd cancelled the watch ({(r.CancelReason.Length == 0 ? "no reason given" : r.CancelReason)}); re-listing");
                return;
            }
            if (r.Events.Count == 0)
            {
                continue;
            }
            bool changed;
            lock (_stateLock)
            {
                long revision = _current.Revision;
                foreach (var ev in r.Events)
                {
                    string key = ev.Kv.Key.ToStringUtf8();
                    _state.Apply(key, ev.Type == Mvccpb.Event.Types.EventType.Put ? ev.Kv.Value : null);
                    revision = Math.Max(revision, ev.Kv.ModRevision);
                }
                _current = _state.Build(revision, out changed);
            }
            if (changed)
            {
                Raise(_current);
            }
        }
        throw new RpcException(new Status(StatusCode.Unavailable, "etcd closed the watch stream"));
    }

    /// <summary>Lists every watched prefix at one revision and makes the state equal to it,
    /// decoding each page while etcd reads the next.</summary>
    private async Task ResyncAsync(bool raise, CancellationToken ct)
    {
        while (true)
        {
            long revision = 0;
            var decoding = TimeSpan.Zero;
            lock (_stateLock)
            {
                _state.BeginList();
            }
            try
            {
                foreach (string prefix in _state.Prefixes)
                {
                    revision = await _etcd.ListPagesAsync(prefix, revision, page =>
                    {
                        long started = System.Diagnostics.Stopwatch.GetTimestamp();
                        lock (_stateLock)
                        {
                            _state.ApplyListedPage(page.Kvs);
                        }
                        decoding += System.Diagnostics.Stopwatch.GetElapsedTime(started);
                    }, ct).ConfigureAwait(false);
                }
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.OutOfRange)
            {
                continue; // compacted between pages: list again at the new head
            }
            MarkUp();
            bool changed;
            long building = System.Diagnostics.Stopwatch.GetTimestamp();
            lock (_stateLock)
            {
                _state.EndList();
                _current = _state.Build(revision, out changed);
            }
            LastListDecodeTime = decoding + System.Diagnostics.Stopwatch.GetElapsedTime(building);
            if (changed && raise)
            {
                Raise(_current);
            }
            return;
        }
    }

    private void Raise(ClusterSnapshot snapshot)
    {
        try
        {
            Changed?.Invoke(snapshot);
        }
        catch (Exception e)
        {
            _log($"kvstore: a Changed handler failed: {e.GetType().Name}: {e.Message}");
        }
    }

    private void MarkUp()
    {
        if (!_up)
        {
            _up = true;
            _log($"kvstore: etcd at {_options.EndpointText} is reachable again");
        }
    }

    private void MarkDown(Exception e)
    {
        if (_up && !_stop.IsCancellationRequested)
        {
            _up = false;
            _log($"kvstore: {_etcd.Describe(e)}; keeping the last known state and retrying");
        }
    }

    /// <summary>Runs a transaction; a failed call marks etcd down and surfaces as
    /// <see cref="KvStoreUnavailableException"/> with a one-line reason.</summary>
    private async Task<TxnResponse> TxnAsync(TxnRequest txn, CancellationToken ct)
    {
        try
        {
            var r = await _etcd.TxnAsync(txn, ct).ConfigureAwait(false);
            MarkUp();
            return r;
        }
        catch (RpcException e) when (e.StatusCode is not StatusCode.InvalidArgument and not StatusCode.FailedPrecondition)
        {
            MarkDown(e);
            throw new KvStoreUnavailableException(_etcd.Describe(e), e);
        }
    }

    private async Task<RangeResponse> RangeAsync(RangeRequest request, CancellationToken ct)
    {
        try
        {
            var r = await _etcd.RangeAsync(request, ct).ConfigureAwait(false);
            MarkUp();
            return r;
        }
        catch (RpcException e)
        {
            MarkDown(e);
            throw new KvStoreUnavailableException(_etcd.Describe(e), e);
        }
    }

    /// <summary>Runs <paramref name="ops"/> in transactions of at most <see cref="MaxTxnOps"/>.</summary>
    private async Task RunOpsAsync(List<RequestOp> ops, CancellationToken ct)
    {
        for (int i = 0; i < ops.Count; i += MaxTxnOps)
        {
            var txn = new TxnRequest();
            txn.Success.AddRange(ops.Skip(i).Take(MaxTxnOps));
            await TxnAsync(txn, ct).ConfigureAwait(false);
        }
    }

    private static RequestOp PutOp(string key, string value, long lease = 0) =>
        new() { RequestPut = new PutRequest { Key = Bytes(key), Value = Bytes(value), Lease = lease } };

    private static RequestOp DeleteOp(string key) => new() { RequestDeleteRange = new DeleteRangeRequest { Key = Bytes(key) } };

    // ---------------------------------------------------------------- policies

    /// <summary>Stores policies cluster-wide in one transaction: all or none. Each record must hold
    /// exactly one policy document named as <see cref="PolicyRecord.NameOf"/> says.</summary>
    public async Task PutPoliciesAsync(IReadOnlyList<PolicyRecord> policies, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(policies);
        if (policies.Count == 0)
        {
            return;
        }
        if (policies.Count > MaxTxnOps)
        {
            throw new ArgumentException($"{policies.Count} policies do not fit one etcd transaction (at most {MaxTxnOps}); apply them in smaller sets", nameof(policies));
        }
        var txn = new TxnRequest();
        foreach (var p in policies)
        {
            try
            {
                RecordCodec.CheckPolicy(p);
            }
            catch (FormatException e)
            {
                throw new ArgumentException(e.Message, nameof(policies));
            }
            txn.Success.Add(PutOp(_keys.Policy(p.Name), RecordCodec.EncodePolicy(p)));
        }
        if (policies.Select(p => p.Name).Distinct(StringComparer.Ordinal).Count() != policies.Count)
        {
            throw new ArgumentException("the same policy appears twice in one apply", nameof(policies));
        }
        await TxnAsync(txn, ct).ConfigureAwait(false);
    }

    /// <summary>Deletes one stored policy by record name; false if there was none.</summary>
    public async Task<bool> DeletePolicyAsync(string name, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        var txn = new TxnRequest();
        txn.Success.Add(DeleteOp(_keys.Policy(name)));
        var r = await TxnAsync(txn, ct).ConfigureAwait(false);
        return r.Responses[0].ResponseDeleteRange.Deleted > 0;
    }

    // ---------------------------------------------------------------- status

    /// <summary>Time left on each node record's lease, read from etcd now (for
    /// <c>gateway cluster status</c>); null for a record without a lease.</summary>
    public async Task<IReadOnlyDictionary<string, TimeSpan?>> GetNodeLeasesAsync(CancellationToken ct)
    {
        var nodes = await RangeAsync(new RangeRequest { Key = Bytes(_keys.NodePrefix), RangeEnd = Bytes(KvKeys.RangeEnd(_keys.NodePrefix)), KeysOnly = true }, ct).ConfigureAwait(false);
        var result = new Dictionary<string, TimeSpan?>(StringComparer.Ordinal);
        var ttls = new Dictionary<long, TimeSpan?>();
        foreach (var kv in nodes.Kvs)
        {
            string name = kv.Key.ToStringUtf8()[_keys.NodePrefix.Length..];
            if (kv.Lease == 0)
            {
                result[name] = null;
                continue;
            }
            if (!ttls.TryGetValue(kv.Lease, out var left))
            {
                try
                {
                    var r = await _etcd.Lease.LeaseTimeToLiveAsync(new LeaseTimeToLiveRequest { ID = kv.Lease }, deadline: _etcd.Deadline, cancellationToken: ct).ConfigureAwait(false);
                    left = r.TTL < 0 ? TimeSpan.Zero : TimeSpan.FromSeconds(r.TTL);
                }
                catch (RpcException e)
                {
                    throw new KvStoreUnavailableException(_etcd.Describe(e), e);
                }
                ttls[kv.Lease] = left;
            }
            result[name] = left;
        }
        return result;
    }

    /// <summary>How many nodes reference each identity (its <c>value/&lt;labels&gt;/&lt;node&gt;</c> keys).</summary>
    public async Task<IReadOnlyDictionary<string, int>> GetIdentityReferencesAsync(CancellationToken ct)
    {
        var (kvs, _) = await ListOrThrowAsync(KvKeys.IdentityValuePrefix, ct).ConfigureAwait(false);
        var result = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var kv in kvs)
        {
            string rest = kv.Key.ToStringUtf8()[KvKeys.IdentityValuePrefix.Length..];
            int slash = rest.LastIndexOf('/');
            if (slash > 0)
            {
                string labels = rest[..slash];
                result[labels] = result.GetValueOrDefault(labels) + 1;
            }
        }
        return result;
    }

    private async Task<(List<Mvccpb.KeyValue> Kvs, long Revision)> ListOrThrowAsync(string prefix, CancellationToken ct)
    {
        try
        {
            var r = await _etcd.ListAsync(prefix, 0, ct).ConfigureAwait(false);
            MarkUp();
            return r;
        }
        catch (RpcException e)
        {
            MarkDown(e);
            throw new KvStoreUnavailableException(_etcd.Describe(e), e);
        }
    }

    // ---------------------------------------------------------------- dispose

    /// <summary>Stops the loops without deleting anything: the node's keys expire with its lease,
    /// as after a crash. Call <see cref="DeregisterAsync"/> first for a clean stop.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested)
        {
            return;
        }
        _stop.Cancel();
        lock (_stateLock)
        {
            _gcTimer?.Dispose();
        }
        foreach (var t in new[] { _watchTask, _keepAliveTask })
        {
            if (t is not null)
            {
                try
                {
                    await t.ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                }
            }
        }
        _etcd.Dispose();
        _stop.Dispose();
    }

    private static string Text(long n) => n.ToString(CultureInfo.InvariantCulture);
}
