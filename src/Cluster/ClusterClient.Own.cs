using System.Globalization;
using Etcdserverpb;
using Grpc.Core;
using static Gateway.Cluster.EtcdConnection;

namespace Gateway.Cluster;

/// <summary>This node's own keys: its record, ipcache entries and identity references, all under
/// one lease that this client keeps alive and replaces (re-putting every key) if etcd lost it.</summary>
public sealed partial class ClusterClient
{
    private long _leaseId;
    private Task? _keepAliveTask;
    private NodeRecord? _self;
    private readonly Dictionary<string, string> _ownIp = new(StringComparer.Ordinal);
    private readonly Dictionary<string, OwnIdentity> _ownIds = new(StringComparer.Ordinal);
    private bool _ipCleaned;

    private sealed class OwnIdentity(uint id)
    {
        public uint Id { get; set; } = id;
        public int References { get; set; } = 1;
    }

    /// <summary>The lease currently holding this node's keys (0 before the first write).</summary>
    public long LeaseId => Interlocked.Read(ref _leaseId);

    /// <summary>
    /// Publishes (or updates, e.g. after a key rotation) this node's record under the lease.
    /// The record's Cluster is this client's cluster; its name may not change once registered.
    /// </summary>
    public async Task RegisterNodeAsync(NodeRecord self, CancellationToken ct)
    {
        RecordCodec.ValidateNode(self);
        self = self with { Cluster = _options.ClusterName };
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (_self is not null && _self.Name != self.Name)
            {
                throw new InvalidOperationException($"this client registered node '{_self.Name}'; it cannot become '{self.Name}'");
            }
            long lease = await EnsureLeaseAsync(ct).ConfigureAwait(false);
            var txn = new TxnRequest();
            txn.Success.Add(PutOp(_keys.Node(self.Name), RecordCodec.EncodeNode(self), lease));
            await TxnAsync(txn, ct).ConfigureAwait(false);
            _self = self;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Replaces this node's ipcache entries: puts new and changed ones under the lease, deletes
    /// those no longer listed (and, on the first call, entries a previous run of this node left).
    /// Every entry's NodeName must be this node's. More than <see cref="MaxTxnOps"/> changes are
    /// written in several transactions.
    /// </summary>
    public async Task PublishIpCacheAsync(IReadOnlyList<IpCacheEntry> ownEntries, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(ownEntries);
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            string node = RequireSelf().Name;
            var desired = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var e in ownEntries)
            {
                RecordCodec.ValidateEntry(e);
                if (e.NodeName != node)
                {
                    throw new ArgumentException($"ipcache entry {e.Prefix} names node '{e.NodeName}', not this node '{node}'", nameof(ownEntries));
                }
                var prefix = RecordCodec.ParseEntryPrefix(e.Prefix);
                string key = _keys.Ip(RecordCodec.IpKeyOf(prefix));
                if (!desired.TryAdd(key, RecordCodec.EncodeEntry(e with { Prefix = prefix.ToString() })))
                {
                    throw new ArgumentException($"ipcache entry {e.Prefix} is listed twice", nameof(ownEntries));
                }
            }
            long lease = await EnsureLeaseAsync(ct).ConfigureAwait(false);
            var ops = new List<RequestOp>();
            foreach (var (key, value) in desired)
            {
                if (!_ownIp.TryGetValue(key, out var old) || old != value)
                {
                    ops.Add(PutOp(key, value, lease));
                }
            }
            var deletes = _ownIp.Keys.Where(k => !desired.ContainsKey(k)).ToList();
            if (!_ipCleaned)
            {
                // Entries a previous run of this node published (its old lease may still be alive).
                deletes.AddRange(_current.IpCache.Values
                    .Where(e => e.NodeName == node)
                    .Select(e => _keys.Ip(RecordCodec.IpKeyOf(RecordCodec.ParseEntryPrefix(e.Prefix))))
                    .Where(k => !desired.ContainsKey(k) && !_ownIp.ContainsKey(k)));
            }
            ops.AddRange(deletes.Select(DeleteOp));
            await RunOpsAsync(ops, ct).ConfigureAwait(false);
            _ownIp.Clear();
            foreach (var (k, v) in desired)
            {
                _ownIp[k] = v;
            }
            _ipCleaned = true;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// The cluster-wide identity of a label set (Cilium's label string, e.g.
    /// "k8s:app=web;k8s:io.kubernetes.pod.namespace=default;", the final ';' optional): the number
    /// any node already uses for it, else the number of a leftover master key holding it, else the
    /// lowest free number from 256. Each step is one etcd transaction that fails if another node
    /// added a reference meanwhile, and is then retried, so racing nodes agree. This node's
    /// reference key keeps the number from being given to other labels; calls are counted and
    /// <see cref="ReleaseIdentityAsync"/> drops one.
    /// </summary>
    public async Task<uint> AllocateIdentityAsync(string labels, CancellationToken ct)
    {
        string key = IdentityAllocation.ToCiliumKey(labels);
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            string node = RequireSelf().Name;
            if (_ownIds.TryGetValue(key, out var own))
            {
                own.References++;
                return own.Id;
            }
            long lease = await EnsureLeaseAsync(ct).ConfigureAwait(false);
            uint id = await AllocateCoreAsync(key, node, lease, ct).ConfigureAwait(false);
            _ownIds[key] = new OwnIdentity(id);
            return id;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Drops one reference; at zero deletes this node's reference key and, if no node
    /// references the identity any more, its master key.</summary>
    public async Task ReleaseIdentityAsync(string labels, CancellationToken ct)
    {
        string key = IdentityAllocation.ToCiliumKey(labels);
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (!_ownIds.TryGetValue(key, out var own) || --own.References > 0)
            {
                return;
            }
            string node = RequireSelf().Name;
            var txn = new TxnRequest();
            txn.Success.Add(DeleteOp(KvKeys.IdentityValue(key, node)));
            await TxnAsync(txn, ct).ConfigureAwait(false);
            _ownIds.Remove(key);
            await DeleteMasterIfUnusedAsync(own.Id, key, ct).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Deletes master keys no node references (left by nodes that crashed holding the last
    /// reference). Each delete is a transaction that fails if a reference appeared meanwhile.
    /// Returns how many were deleted. Safe to run from every node.
    /// </summary>
    public async Task<int> CollectIdentityGarbageAsync(CancellationToken ct)
    {
        var (masters, _) = await ListOrThrowAsync(KvKeys.IdentityIdPrefix, ct).ConfigureAwait(false);
        int deleted = 0;
        foreach (var kv in masters)
        {
            string text = kv.Key.ToStringUtf8()[KvKeys.IdentityIdPrefix.Length..];
            if (!uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out uint id))
            {
                continue;
            }
            if (await DeleteMasterIfUnusedAsync(id, kv.Value.ToStringUtf8(), ct).ConfigureAwait(false))
            {
                deleted++;
            }
        }
        return deleted;
    }

    /// <summary>How often each node collects identity garbage: the default of Cilium's operator
    /// (<c>--identity-gc-interval</c>, 15 minutes). Every node runs it; the deletes are
    /// transactions, so nodes collecting at the same moment cannot free a number in use.</summary>
    public static readonly TimeSpan DefaultIdentityGcInterval = TimeSpan.FromMinutes(15);

    private ITimer? _gcTimer;
    private int _gcRunning;
    private long _gcRuns;
    private long _gcCollected;

    /// <summary>Garbage collections the timer ran to the end, failed ones included (<see cref="StartIdentityGarbageCollection"/>).</summary>
    public long IdentityGcRuns => Interlocked.Read(ref _gcRuns);

    /// <summary>Identity numbers the timer's collections freed.</summary>
    public long IdentitiesCollected => Interlocked.Read(ref _gcCollected);

    /// <summary>
    /// Runs <see cref="CollectIdentityGarbageAsync"/> every <paramref name="interval"/> (default
    /// <see cref="DefaultIdentityGcInterval"/>) on the client's clock, first one interval from now.
    /// A run is skipped while etcd is down or the previous run is still going. Idempotent; stopped
    /// by <see cref="DisposeAsync"/>.
    /// </summary>
    public void StartIdentityGarbageCollection(TimeSpan? interval = null)
    {
        var every = interval ?? DefaultIdentityGcInterval;
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(every, TimeSpan.Zero, nameof(interval));
        ObjectDisposedException.ThrowIf(_stop.IsCancellationRequested, this);
        lock (_stateLock)
        {
            _gcTimer ??= _clock.CreateTimer(_ => CollectOnTimer(), null, every, every);
        }
    }

    private void CollectOnTimer()
    {
        if (_stop.IsCancellationRequested || !_up || Interlocked.Exchange(ref _gcRunning, 1) == 1)
        {
            return;
        }
        _ = Task.Run(async () =>
        {
            try
            {
                int freed = await CollectIdentityGarbageAsync(_stop.Token).ConfigureAwait(false);
                Interlocked.Add(ref _gcCollected, freed);
                if (freed > 0)
                {
                    _log($"kvstore: identity garbage collection freed {freed} identity number(s) that no node referenced");
                }
            }
            catch (Exception e) when (!_stop.IsCancellationRequested)
            {
                _log($"kvstore: identity garbage collection failed ({e.Message}); it runs again at the next interval");
            }
            catch (Exception)
            {
                // Stopping: nothing to report.
            }
            finally
            {
                Volatile.Write(ref _gcRunning, 0);
                Interlocked.Increment(ref _gcRuns);
            }
        });
    }

    private async Task<bool> DeleteMasterIfUnusedAsync(uint id, string labels, CancellationToken ct)
    {
        string refs = KvKeys.IdentityValues(labels);
        var txn = new TxnRequest();
        // No key at all in the reference range (an empty range compares as create revision 0).
        txn.Compare.Add(new Compare { Key = Bytes(refs), RangeEnd = Bytes(KvKeys.RangeEnd(refs)), Target = Compare.Types.CompareTarget.Create, Result = Compare.Types.CompareResult.Equal, CreateRevision = 0 });
        txn.Compare.Add(new Compare { Key = Bytes(KvKeys.IdentityId(id)), Target = Compare.Types.CompareTarget.Value, Result = Compare.Types.CompareResult.Equal, Value = Bytes(labels) });
        txn.Success.Add(DeleteOp(KvKeys.IdentityId(id)));
        var r = await TxnAsync(txn, ct).ConfigureAwait(false);
        return r.Succeeded;
    }

    private async Task<uint> AllocateCoreAsync(string labels, string node, long lease, CancellationToken ct)
    {
        string refs = KvKeys.IdentityValues(labels);
        string mine = KvKeys.IdentityValue(labels, node);
        for (int attempt = 0; attempt < 1000; attempt++)
        {
            var existing = await RangeAsync(new RangeRequest { Key = Bytes(refs), RangeEnd = Bytes(KvKeys.RangeEnd(refs)) }, ct).ConfigureAwait(false);
            long seen = existing.Header.Revision;
            // Fails if any reference to these labels was added or changed after our read.
            var noNewRefs = new Compare
            {
                Key = Bytes(refs), RangeEnd = Bytes(KvKeys.RangeEnd(refs)),
                Target = Compare.Types.CompareTarget.Mod, Result = Compare.Types.CompareResult.Less, ModRevision = seen + 1,
            };
            uint? used = null;
            foreach (var kv in existing.Kvs)
            {
                string suffix = kv.Key.ToStringUtf8()[refs.Length..];
                if (suffix.Contains('/'))
                {
                    continue; // another label set that starts with these labels
                }
                try
                {
                    used = RecordCodec.DecodeIdentityNumber(kv.Value.ToStringUtf8());
                    break;
                }
                catch (FormatException e)
                {
                    _log($"kvstore: ignoring {kv.Key.ToStringUtf8()}: {e.Message}");
                }
            }
            uint candidate;
            bool create;
            if (used is uint u)
            {
                (candidate, create) = (u, false);
            }
            else
            {
                var (masters, _) = await ListOrThrowAsync(KvKeys.IdentityIdPrefix, ct).ConfigureAwait(false);
                var taken = new HashSet<uint>();
                uint? leftover = null;
                foreach (var kv in masters)
                {
                    if (uint.TryParse(kv.Key.ToStringUtf8()[KvKeys.IdentityIdPrefix.Length..], NumberStyles.None, CultureInfo.InvariantCulture, out uint id))
                    {
                        taken.Add(id);
                        if (leftover is null && kv.Value.ToStringUtf8() == labels)
                        {
                            leftover = id;
                        }
                    }
                }
                if (leftover is uint l)
                {
                    (candidate, create) = (l, false);
                }
                else
                {
                    candidate = IdentityAllocation.FirstIdentity;
                    while (taken.Contains(candidate))
                    {
                        candidate++;
                    }
                    if (candidate > IdentityAllocation.MaxIdentity)
                    {
                        throw new InvalidOperationException($"no free identity left for {labels} (all of {IdentityAllocation.FirstIdentity}..{IdentityAllocation.MaxIdentity} in use)");
                    }
                    create = true;
                }
            }
            var txn = new TxnRequest();
            txn.Compare.Add(noNewRefs);
            string master = KvKeys.IdentityId(candidate);
            if (create)
            {
                txn.Compare.Add(new Compare { Key = Bytes(master), Target = Compare.Types.CompareTarget.Create, Result = Compare.Types.CompareResult.Equal, CreateRevision = 0 });
                txn.Success.Add(PutOp(master, labels)); // no lease: outlives this node while others use it
            }
            else
            {
                txn.Compare.Add(new Compare { Key = Bytes(master), Target = Compare.Types.CompareTarget.Value, Result = Compare.Types.CompareResult.Equal, Value = Bytes(labels) });
            }
            txn.Success.Add(PutOp(mine, Text(candidate), lease));
            var r = await TxnAsync(txn, ct).ConfigureAwait(false);
            if (r.Succeeded)
            {
                return candidate;
            }
        }
        throw new KvStoreUnavailableException($"kvstore: could not allocate an identity for {labels} after 1000 attempts (heavy contention)");
    }

    /// <summary>
    /// Deletes this node's record, ipcache entries and identity references and revokes the
    /// lease: the clean stop, after which other nodes drop this one at once.
    /// </summary>
    public async Task DeregisterAsync(CancellationToken ct)
    {
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var ops = new List<RequestOp>();
            if (_self is not null)
            {
                ops.Add(DeleteOp(_keys.Node(_self.Name)));
                ops.AddRange(_ownIds.Keys.Select(l => DeleteOp(KvKeys.IdentityValue(l, _self.Name))));
            }
            ops.AddRange(_ownIp.Keys.Select(DeleteOp));
            await RunOpsAsync(ops, ct).ConfigureAwait(false);
            foreach (var (labels, own) in _ownIds)
            {
                await DeleteMasterIfUnusedAsync(own.Id, labels, ct).ConfigureAwait(false);
            }
            long lease = Interlocked.Exchange(ref _leaseId, 0);
            if (lease != 0)
            {
                try
                {
                    await _etcd.Lease.LeaseRevokeAsync(new LeaseRevokeRequest { ID = lease }, deadline: _etcd.Deadline, cancellationToken: ct).ConfigureAwait(false);
                }
                catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
                {
                    // already expired
                }
                catch (RpcException e)
                {
                    throw new KvStoreUnavailableException(_etcd.Describe(e), e);
                }
            }
            _ownIp.Clear();
            _ownIds.Clear();
            _self = null;
        }
        finally
        {
            _gate.Release();
        }
    }

    private NodeRecord RequireSelf() =>
        _self ?? throw new InvalidOperationException("register this node (RegisterNodeAsync) before publishing ipcache entries or allocating identities");

    // ---------------------------------------------------------------- lease

    /// <summary>Grants the lease on first use and starts keeping it alive. Caller holds _gate.</summary>
    private async Task<long> EnsureLeaseAsync(CancellationToken ct)
    {
        long id = Interlocked.Read(ref _leaseId);
        if (id != 0)
        {
            return id;
        }
        id = await GrantLeaseAsync(ct).ConfigureAwait(false);
        Interlocked.Exchange(ref _leaseId, id);
        _keepAliveTask ??= Task.Run(() => KeepAliveLoopAsync(_stop.Token), CancellationToken.None);
        return id;
    }

    private async Task<long> GrantLeaseAsync(CancellationToken ct)
    {
        try
        {
            var r = await _etcd.Lease.LeaseGrantAsync(new LeaseGrantRequest { TTL = (long)_options.LeaseTtl.TotalSeconds }, deadline: _etcd.Deadline, cancellationToken: ct).ConfigureAwait(false);
            if (r.Error.Length > 0)
            {
                throw new KvStoreUnavailableException($"kvstore: etcd refused a lease: {r.Error}");
            }
            MarkUp();
            return r.ID;
        }
        catch (RpcException e)
        {
            MarkDown(e);
            throw new KvStoreUnavailableException(_etcd.Describe(e), e);
        }
    }

    /// <summary>Refreshes the lease every TTL/3. If etcd says it is gone (an outage longer than the
    /// TTL), grants a new one and puts every own key again.</summary>
    private async Task KeepAliveLoopAsync(CancellationToken ct)
    {
        var interval = _options.LeaseTtl / 3;
        var backoff = MinBackoff;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                using var call = _etcd.Lease.LeaseKeepAlive(cancellationToken: ct);
                while (!ct.IsCancellationRequested)
                {
                    long id = Interlocked.Read(ref _leaseId);
                    if (id != 0)
                    {
                        await call.RequestStream.WriteAsync(new LeaseKeepAliveRequest { ID = id }, ct).ConfigureAwait(false);
                        using var wait = new CancellationTokenSource(_options.RequestTimeout, _clock);
                        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, wait.Token);
                        if (!await call.ResponseStream.MoveNext(linked.Token).ConfigureAwait(false))
                        {
                            throw new RpcException(new Status(StatusCode.Unavailable, "etcd closed the lease keep-alive stream"));
                        }
                        MarkUp();
                        backoff = MinBackoff;
                        if (call.ResponseStream.Current.TTL <= 0 && Interlocked.Read(ref _leaseId) == id)
                        {
                            _log($"kvstore: lease {id:x} expired in etcd; granting a new one and publishing this node's keys again");
                            await ReplaceLeaseAsync(id, ct).ConfigureAwait(false);
                            continue;
                        }
                    }
                    await Task.Delay(interval, _clock, ct).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                if (e is RpcException or OperationCanceledException or KvStoreUnavailableException or IOException)
                {
                    MarkDown(e);
                }
                else
                {
                    _log($"kvstore: lease keep-alive error {e.GetType().Name}: {e.Message}; retrying");
                }
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

    private async Task ReplaceLeaseAsync(long lost, CancellationToken ct)
    {
        await _gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (Interlocked.Read(ref _leaseId) != lost)
            {
                return; // deregistered or already replaced
            }
            long lease = await GrantLeaseAsync(ct).ConfigureAwait(false);
            // Identities first: a peer that sees this node's ipcache entries again must find
            // the identities they name (and this node's references to them) already in place.
            if (_self is not null)
            {
                foreach (var (labels, own) in _ownIds)
                {
                    uint id = await AllocateCoreAsync(labels, _self.Name, lease, ct).ConfigureAwait(false);
                    if (id != own.Id)
                    {
                        _log($"kvstore: identity of {labels} is now {id} (was {own.Id}; its number was released while this node's lease was lost)");
                        own.Id = id;
                    }
                }
            }
            var ops = new List<RequestOp>();
            if (_self is not null)
            {
                ops.Add(PutOp(_keys.Node(_self.Name), RecordCodec.EncodeNode(_self), lease));
            }
            ops.AddRange(_ownIp.Select(kv => PutOp(kv.Key, kv.Value, lease)));
            await RunOpsAsync(ops, ct).ConfigureAwait(false);
            Interlocked.Exchange(ref _leaseId, lease);
        }
        finally
        {
            _gate.Release();
        }
    }
}
