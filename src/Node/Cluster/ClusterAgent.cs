using System.Text;
using System.Threading.Channels;
using Gateway.Cluster;
using Gateway.Crypto;
using Gateway.Datapath;
using Gateway.Node.Configuration;
using Gateway.Node.Daemon;
using Gateway.Node.Metrics;
using Gateway.Node.Overlay;
using Gateway.Tunnel;

namespace Gateway.Node.Cluster;

/// <summary>
/// The daemon's side of cluster mode (docs/cluster.md). It registers this node in etcd under a
/// lease (name, public key, underlay address and port, tunnel address, pod CIDRs, boot id),
/// allocates identities for its own pods there and publishes their ipcache entries, and turns
/// every other node's record into a [Peer]: the configuration the node runs is the file plus one
/// synthesized [Peer] per accepted record, applied through <see cref="WireGuardNode.Reload"/>, so
/// peers that stay keep their sessions and routes follow. Store changes (nodes, ipcache,
/// identities, policies) are applied within a fraction of a second. While etcd is down the node
/// keeps its last state; the client resyncs on reconnect and an unchanged view changes nothing.
/// </summary>
public sealed class ClusterAgent : IAsyncDisposable
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan Debounce = TimeSpan.FromMilliseconds(50);

    private readonly string _configPath;
    private readonly OverlaySection _settings;
    private readonly ClusterPeerSelector _selector;
    private readonly ClusterOverlaySource _source;
    private readonly Lock _applyLock = new();
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly CancellationTokenSource _stop = new();
    private readonly Dictionary<string, string> _refused = new(StringComparer.Ordinal);
    private readonly List<string> _toRelease = [];
    private readonly bool _ipsec;
    private string _baseText;
    private ReservedClaims _fileClaims;
    private IReadOnlyDictionary<string, NodeRecord>? _appliedNodes;
    private Dictionary<string, ClusterPeer> _peers = new(StringComparer.Ordinal);
    private WireGuardNode? _node;
    private NodeRecord? _self;
    private List<IpCacheEntry>? _published;
    private bool _publishPending;
    private Task? _loop;
    private ClusterServices? _services;
    private ClusterBandwidth? _bandwidth;
    private bool _lastUp = true;
    private DateTime _selfMissingSince = DateTime.MaxValue;

    private ClusterAgent(string configPath, string baseText, WgQuickConfig config, ClusterClient client, NodeLog log, string nodeName, IpAddress nodeAddress)
    {
        _configPath = configPath;
        _baseText = baseText;
        _settings = config.Overlay!;
        Client = client;
        Log = log;
        NodeName = nodeName;
        NodeAddress = nodeAddress;
        _fileClaims = Reserved(config);
        _ipsec = _settings.Encryption == OverlayEncryption.Ipsec;
        _selector = new ClusterPeerSelector(nodeName, _settings.PodCidrs, _settings.TunnelAddress, _settings.ClusterCidrs) { RequireBootId = _ipsec };
        _source = new ClusterOverlaySource(this);
    }

    internal ClusterClient Client { get; }
    internal NodeLog Log { get; }
    public string NodeName { get; }
    public IpAddress NodeAddress { get; }

    /// <summary>
    /// This run's boot id, published in the node record: a fresh random UUID per start of the
    /// daemon (not the kernel's boot id, which every namespace of a host shares and a daemon
    /// restart keeps). In IPsec mode it is also the local input of the per node-pair key
    /// derivation (pass it as <see cref="WireGuardNodeOptions.IpsecBootId"/>), so a restarted node,
    /// whose ESP sequence counters start again, gets new keys on both sides of every pair.
    /// </summary>
    public string BootId { get; } = Guid.NewGuid().ToString();

    /// <summary>Endpoints and policies for <see cref="WireGuardNodeOptions.OverlaySource"/>.</summary>
    public IOverlaySource Source => _source;

    /// <summary>The other nodes that are peers now, by name.</summary>
    public IReadOnlyCollection<string> PeerNames => _peers.Keys;

    /// <summary>Pod CIDRs of each accepted peer: an ipcache entry must lie in its node's.</summary>
    internal IReadOnlyDictionary<string, IReadOnlyList<IpPrefix>> PeerPods =>
        _peers.ToDictionary(p => p.Key, p => p.Value.PodCidrs, StringComparer.Ordinal);

    /// <summary>
    /// Checks the cluster settings of <paramref name="config"/>, finds the node's address and
    /// connects to etcd. Settings that are wrong raise <see cref="ConfigException"/>; an etcd that
    /// cannot be reached or refuses this client raises <see cref="KvStoreUnavailableException"/>.
    /// </summary>
    public static async Task<ClusterAgent> ConnectAsync(WgQuickConfig config, NodeLog log, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(config);
        var settings = config.Overlay?.KvStore ?? throw new ArgumentException("The configuration has no KVStore.", nameof(config));
        KvStoreOptions options;
        try
        {
            options = KvStoreOptions.Parse(settings.Endpoints, settings.CaPath, settings.CertPath, settings.KeyPath, settings.LeaseTtl, settings.ClusterName);
        }
        catch (ClusterConfigException e)
        {
            throw new ConfigException(config.Path, settings.Line, e.Message);
        }
        string nodeName = config.Overlay!.NodeName ?? Environment.MachineName;
        var address = settings.NodeAddress ?? NodeAddressDiscovery.Find(out string why)
            ?? throw new ConfigException(config.Path, settings.Line, $"NodeAddress: {why}");
        string baseText;
        try
        {
            baseText = File.ReadAllText(config.Path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException(config.Path, 0, $"cannot read: {e.Message}");
        }
        long started = System.Diagnostics.Stopwatch.GetTimestamp();
        var client = await ClusterClient.ConnectAsync(options, message => log.Info(message), null, ct).ConfigureAwait(false);
        var listed = client.Current;
        log.Info($"cluster: connected to {options.EndpointText} as node '{nodeName}' (address {address}, cluster '{options.ClusterName}', lease {options.LeaseTtl.TotalSeconds:0} s); " +
                 $"listed {listed.Nodes.Count} node(s), {listed.IpCache.Count} ipcache entries, {listed.Identities.Count} identities, {listed.Policies.Count} policies " +
                 $"at revision {listed.Revision} in {System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds:0} ms " +
                 $"({client.LastListDecodeTime.TotalMilliseconds:0} ms of it decoding)");
        return new ClusterAgent(config.Path, baseText, config, client, log, nodeName, address);
    }

    /// <summary>Cilium's WireGuard port: cluster nodes listen on it unless ListenPort says otherwise.</summary>
    public const ushort DefaultListenPort = 51871;

    /// <summary>The configuration to start the node with: the file plus one [Peer] per node in etcd now.</summary>
    public WgQuickConfig BuildInitialConfig()
    {
        lock (_applyLock)
        {
            var snapshot = Client.Current;
            SelectPeers(snapshot.Nodes);
            _appliedNodes = snapshot.Nodes;
            return MergedConfig();
        }
    }

    /// <summary>The file's configuration plus one [Peer] per accepted node, built as objects (a
    /// cluster of thousands of nodes is never printed and parsed again as text).</summary>
    private WgQuickConfig MergedConfig()
    {
        var config = WgQuickConfig.Parse(_baseText, _configPath);
        // Other nodes learn the port from the record, so it must be known before the socket opens.
        config.Interface.ListenPort ??= DefaultListenPort;
        foreach (var peer in _peers.Values.OrderBy(p => p.Name, StringComparer.Ordinal))
        {
            config.Peers.Add(ToSection(peer));
        }
        return config;
    }

    /// <summary>What a [Peer] with PublicKey, Endpoint, TunnelAddress and PodCIDRs would load as.</summary>
    private static PeerSection ToSection(ClusterPeer peer)
    {
        var section = new PeerSection { PublicKey = ParseKey(peer.PublicKey), Endpoint = peer.Endpoint, EndpointText = peer.Endpoint.ToString() };
        section.AllowedIps.Add(new IpPrefix(peer.TunnelAddress, peer.TunnelAddress.BitLength));
        section.Overlay.TunnelAddress = peer.TunnelAddress;
        section.Overlay.PodCidrs.AddRange(peer.PodCidrs);
        if (peer.BootId.Length > 0)
        {
            section.Overlay.IpsecBootId = peer.BootId; // used in IPsec mode only
        }
        return section;
    }

    /// <summary>Publishes this node's record under its lease (before the node starts: identities
    /// and ipcache entries are allocated under the same lease while it starts).</summary>
    public async Task RegisterAsync(ushort listenPort, CancellationToken ct = default)
    {
        var self = SelfRecord(listenPort);
        await Client.RegisterNodeAsync(self, ct).ConfigureAwait(false);
        _self = self;
    }

    /// <summary>Publishes the running node's pods and starts following the store.</summary>
    public async Task StartAsync(WireGuardNode node, CancellationToken ct = default)
    {
        _node = node;
        AddInstruments(node.Meters);
        Client.Changed += _ => _wake.Writer.TryWrite(true);
        // IPsec mode has no UDP socket (ESP has no port): the record keeps the configured port.
        if (_self is null || (node.Ipsec is null && _self.Port != node.ListenPort))
        {
            await RegisterAsync(node.ListenPort, ct).ConfigureAwait(false);
        }
        await PublishPendingAsync(ct).ConfigureAwait(false);
        await Client.StartWatchingAsync(_stop.Token).ConfigureAwait(false);
        Client.StartIdentityGarbageCollection();
        using var process = System.Diagnostics.Process.GetCurrentProcess();
        Log.Info($"cluster: registered node '{NodeName}' ({_self!.WireGuardPublicKey}) at {NodeAddress}{(node.Ipsec is null ? $":{node.ListenPort}" : $" (IPsec, boot id {BootId})")}; {_peers.Count} peer node(s), " +
                 $"{(DateTime.Now - process.StartTime).TotalSeconds:0.00} s after the process started ({process.TotalProcessorTime.TotalSeconds:0.00} s of CPU)");
        _loop = Task.Run(() => LoopAsync(_stop.Token));
        _wake.Writer.TryWrite(true);
        _services = ClusterServices.Start(Client.Options, node, Log);
        _bandwidth = ClusterBandwidth.Start(Client.Options, node, Log);
    }

    private NodeRecord SelfRecord(ushort port) => new()
    {
        Name = NodeName,
        WireGuardPublicKey = CurrentPublicKey(),
        Address = NodeAddress.ToString(),
        Port = port,
        TunnelAddress = _settings.TunnelAddress.ToString(),
        PodCidrs = _settings.PodCidrs.Select(p => p.ToString()).ToArray(),
        BootId = BootId,
    };

    private string CurrentPublicKey()
    {
        using var config = WgQuickConfig.Parse(_baseText, _configPath);
        using var publicKey = config.Interface.PrivateKey!.DerivePublic();
        return publicKey.ToBase64();
    }

    private static ReservedClaims Reserved(WgQuickConfig config)
    {
        var keys = config.Peers.Select(p => p.PublicKey.ToBase64()).ToHashSet(StringComparer.Ordinal);
        using var own = config.Interface.PrivateKey!.DerivePublic();
        keys.Add(own.ToBase64());
        var tunnels = config.Peers.Where(p => p.Overlay.TunnelAddress is not null).Select(p => p.Overlay.TunnelAddress!.Value).ToList();
        var pods = config.Peers.SelectMany(p => p.Overlay.PodCidrs).ToList();
        return new ReservedClaims(keys, tunnels, pods);
    }

    // ------------------------------------------------------------------ following the store

    private async Task LoopAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            bool woken;
            try
            {
                using var tick = CancellationTokenSource.CreateLinkedTokenSource(ct);
                tick.CancelAfter(TimeSpan.FromMilliseconds(500));
                woken = await _wake.Reader.ReadAsync(tick.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                woken = false;
            }
            if (ct.IsCancellationRequested)
            {
                return;
            }
            try
            {
                await CheckStoreAsync(ct).ConfigureAwait(false);
                if (woken)
                {
                    await Task.Delay(Debounce, ct).ConfigureAwait(false);
                    _wake.Reader.TryRead(out _);
                    Apply(force: false);
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // The agent must outlive any one bad moment of the store; the data path is unaffected.
                Log.Error($"cluster: {e.Message}");
            }
        }
    }

    /// <summary>Notices etcd going down and coming back (logged once each way), and puts this
    /// node's record and entries back when the store lost them (a lease that ended during an outage).</summary>
    private async Task CheckStoreAsync(CancellationToken ct)
    {
        bool up = Client.IsUp;
        if (up != _lastUp)
        {
            _lastUp = up;
            if (up)
            {
                Log.Info("cluster: kvstore reachable again; resynced, applying changes made meanwhile");
                _publishPending = true;
                _wake.Writer.TryWrite(true);
            }
            else
            {
                Log.Warn("cluster: kvstore unreachable; forwarding continues with the last known peers, endpoints and policies");
            }
        }
        if (!up || _self is null)
        {
            return;
        }
        var snapshot = Client.Current;
        bool selfPresent = snapshot.Nodes.TryGetValue(NodeName, out var record) && record.WireGuardPublicKey == _self.WireGuardPublicKey;
        bool entriesPresent = _source.OwnEntries.All(e => snapshot.IpCache.TryGetValue(e.Prefix, out var stored) && stored.NodeName == NodeName && stored.Identity == e.Identity);
        if (selfPresent && entriesPresent)
        {
            _selfMissingSince = DateTime.MaxValue;
        }
        else if (_selfMissingSince == DateTime.MaxValue)
        {
            _selfMissingSince = DateTime.UtcNow;
        }
        else if (DateTime.UtcNow - _selfMissingSince > TimeSpan.FromSeconds(2))
        {
            Log.Warn("cluster: this node's record or pods are missing from the store; registering again");
            _selfMissingSince = DateTime.MaxValue;
            await Client.RegisterNodeAsync(_self, ct).ConfigureAwait(false);
            _publishPending = true;
        }
        if (_publishPending)
        {
            await PublishPendingAsync(ct).ConfigureAwait(false);
        }
        List<string> release;
        lock (_toRelease)
        {
            release = [.. _toRelease];
            _toRelease.Clear();
        }
        foreach (string labels in release)
        {
            await Client.ReleaseIdentityAsync(labels, ct).ConfigureAwait(false);
        }
    }

    private async Task PublishPendingAsync(CancellationToken ct)
    {
        var entries = _source.OwnEntries.ToList();
        await Client.PublishIpCacheAsync(entries, ct).ConfigureAwait(false);
        _published = entries;
        _publishPending = false;
    }

    /// <summary>
    /// Brings peers and policy in line with the store, as deltas: the node records are only
    /// re-selected when they changed, and only peers that joined, left or changed are handed to
    /// the node (the others keep their sessions and routes); endpoints and policies are reloaded
    /// once per batch of changes, and only when the ipcache, identities, policies or peers moved.
    /// <paramref name="force"/> (SIGHUP) re-reads the file and applies it whole.
    /// </summary>
    private void Apply(bool force)
    {
        var node = _node;
        if (node is null)
        {
            return;
        }
        lock (_applyLock)
        {
            var snapshot = Client.Current;
            if (force)
            {
                SelectPeers(snapshot.Nodes);
                _appliedNodes = snapshot.Nodes;
                WgQuickConfig next;
                try
                {
                    next = MergedConfig();
                }
                catch (ConfigException e)
                {
                    Log.Error($"cluster: the configuration does not load, previous peers stay: {e.Message}");
                    return;
                }
                try
                {
                    node.Reload(next); // also reloads endpoints and policy
                }
                catch (Gateway.Node.Link.LinkException e)
                {
                    next.Dispose();
                    Log.Error($"cluster: applying peers failed, previous configuration stays: {e.Message}");
                }
                return;
            }
            bool peersMoved = false;
            if (!ReferenceEquals(snapshot.Nodes, _appliedNodes))
            {
                var before = _peers;
                SelectPeers(snapshot.Nodes);
                _appliedNodes = snapshot.Nodes;
                var (upserts, removed) = Delta(before, _peers);
                if (upserts.Count + removed.Count > 0)
                {
                    peersMoved = true;
                    try
                    {
                        node.ApplyPeerChanges(upserts.Select(ToSection).ToList(), removed);
                    }
                    catch (Gateway.Node.Link.LinkException e)
                    {
                        Log.Error($"cluster: setting routes for the changed peers failed (retried with the next change): {e.Message}");
                    }
                }
            }
            if (peersMoved || _source.IsStale(snapshot))
            {
                node.Overlay?.ReloadPolicy();
            }
        }
    }

    /// <summary>Peers to add or update (new, or a changed key, endpoint, tunnel address, pod
    /// CIDRs or boot id) and keys to remove (gone, or replaced by a new key).</summary>
    private static (List<ClusterPeer> Upserts, List<PublicKey> Removed) Delta(Dictionary<string, ClusterPeer> before, Dictionary<string, ClusterPeer> after)
    {
        var upserts = new List<ClusterPeer>();
        var removed = new List<PublicKey>();
        foreach (var (name, peer) in after)
        {
            if (!before.TryGetValue(name, out var old))
            {
                upserts.Add(peer);
            }
            else if (old.PublicKey != peer.PublicKey)
            {
                removed.Add(KeyOf(old));
                upserts.Add(peer);
            }
            else if (old.Endpoint != peer.Endpoint || old.TunnelAddress != peer.TunnelAddress || !old.PodCidrs.SequenceEqual(peer.PodCidrs) ||
                     old.BootId != peer.BootId)
            {
                upserts.Add(peer);
            }
        }
        foreach (var (name, old) in before)
        {
            if (!after.ContainsKey(name))
            {
                removed.Add(KeyOf(old));
            }
        }
        return (upserts, removed);
    }

    /// <summary>A key the selector already checked parses.</summary>
    private static WireGuardKey ParseKey(string base64) =>
        WireGuardKey.TryParseBase64(base64, out var key) && key is not null ? key : throw new InvalidDataException($"not a WireGuard key: {base64}");

    private static PublicKey KeyOf(ClusterPeer peer)
    {
        Span<byte> bytes = stackalloc byte[WireGuardKey.Size];
        return WireGuardKey.TryDecodeBase64(peer.PublicKey, bytes)
            ? new PublicKey(bytes)
            : throw new InvalidDataException($"not a WireGuard key: {peer.PublicKey}");
    }

    /// <summary>Joins, leaves and changes logged one line each up to this many per batch; a bigger
    /// batch (a node joining a large cluster) is summarised, so the log never floods.</summary>
    private const int LoggedChangesPerBatch = 16;

    /// <summary>Re-selects the peers from the node records; logs joins, leaves and refusals.</summary>
    private void SelectPeers(IReadOnlyDictionary<string, NodeRecord> nodes)
    {
        var claims = nodes.Values.Select(n => new NodeClaim(n.Name, n.WireGuardPublicKey, n.Address, n.Port, n.TunnelAddress, n.PodCidrs ?? []) { BootId = n.BootId });
        var (peers, refused) = _selector.Select(claims, _fileClaims);
        var next = new Dictionary<string, ClusterPeer>(peers.Count, StringComparer.Ordinal);
        var joined = new List<ClusterPeer>();
        var changed = new List<ClusterPeer>();
        foreach (var peer in peers)
        {
            next[peer.Name] = peer;
            if (!_peers.TryGetValue(peer.Name, out var before))
            {
                joined.Add(peer);
            }
            else if (before.PublicKey != peer.PublicKey || before.Endpoint != peer.Endpoint || (_ipsec && before.BootId != peer.BootId))
            {
                changed.Add(peer);
            }
        }
        var left = _peers.Keys.Where(n => !next.ContainsKey(n)).ToList();
        if (joined.Count + changed.Count + left.Count <= LoggedChangesPerBatch)
        {
            foreach (var peer in joined)
            {
                Log.Info($"cluster: node '{peer.Name}' joined: peer {peer.PublicKey} at {peer.Endpoint}, tunnel {peer.TunnelAddress}, pods {string.Join(", ", peer.PodCidrs)}" +
                         (_ipsec ? $", boot id {peer.BootId}" : ""));
            }
            foreach (var peer in changed)
            {
                Log.Info($"cluster: node '{peer.Name}' changed: peer {peer.PublicKey} at {peer.Endpoint}" + (_ipsec ? $", boot id {peer.BootId}" : ""));
            }
            foreach (var name in left)
            {
                Log.Info($"cluster: node '{name}' left; its peer and routes are removed, strict mode keeps its pod CIDRs blocked");
            }
        }
        else
        {
            Log.Info($"cluster: {joined.Count} node(s) joined, {changed.Count} changed, {left.Count} left; {next.Count} peer node(s)");
        }
        var refusedNow = new HashSet<string>(StringComparer.Ordinal);
        int refusalsLogged = 0;
        foreach (var (name, reason) in refused)
        {
            refusedNow.Add(name);
            if (!_refused.TryGetValue(name, out var before) || before != reason)
            {
                _refused[name] = reason;
                if (refusalsLogged++ < LoggedChangesPerBatch)
                {
                    Log.Warn($"cluster: node record '{name}' ignored: {reason}");
                }
            }
        }
        if (refusalsLogged > LoggedChangesPerBatch)
        {
            Log.Warn($"cluster: {refusalsLogged - LoggedChangesPerBatch} more node record(s) ignored (gateway_cluster_records_ignored counts them all)");
        }
        foreach (var name in _refused.Keys.Where(n => !refusedNow.Contains(n)).ToList())
        {
            _refused.Remove(name);
        }
        _peers = next;
    }

    /// <summary>Publishes this node's ipcache entries when they differ from what was published.</summary>
    internal void PublishIfChanged(List<IpCacheEntry> entries)
    {
        if (_published is not null && _published.SequenceEqual(entries))
        {
            return;
        }
        if (_self is null || !Client.IsUp)
        {
            _publishPending = true;
            return;
        }
        try
        {
            Call(async ct => { await Client.PublishIpCacheAsync(entries, ct).ConfigureAwait(false); return true; }, "publishing this node's ipcache entries");
            _published = entries;
        }
        catch (InvalidDataException e)
        {
            _publishPending = true;
            Log.Warn($"cluster: {e.Message}; retried when the kvstore is back");
        }
    }

    internal void ReleaseLater(string labels)
    {
        lock (_toRelease)
        {
            _toRelease.Add(labels);
        }
    }

    /// <summary>Runs a store call from a synchronous control-plane path, with a deadline.</summary>
    internal T Call<T>(Func<CancellationToken, Task<T>> call, string what)
    {
        using var timeout = new CancellationTokenSource(CallTimeout);
        try
        {
            return Task.Run(() => call(timeout.Token)).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is not InvalidDataException)
        {
            throw new InvalidDataException($"kvstore: {what} failed: {e.Message}", e);
        }
    }

    // ------------------------------------------------------------------ SIGHUP, metrics, stop

    /// <summary>
    /// SIGHUP: reads the file again and re-merges the cluster's peers. A new PrivateKey is applied
    /// here first, then its public key is published so that every other node follows.
    /// </summary>
    public void ReloadFile()
    {
        string text = File.ReadAllText(_configPath);
        using (var check = WgQuickConfig.Parse(text, _configPath))
        {
            foreach (var warning in check.Warnings)
            {
                Log.Warn(warning);
            }
            lock (_applyLock)
            {
                _baseText = text;
                _fileClaims = Reserved(check);
            }
        }
        Apply(force: true);
        if (_self is not null)
        {
            var updated = SelfRecord((ushort)_self.Port);
            if (updated.WireGuardPublicKey != _self.WireGuardPublicKey)
            {
                Call(async ct => { await Client.RegisterNodeAsync(updated, ct).ConfigureAwait(false); return true; }, "publishing the new public key");
                _self = updated;
                Log.Info($"cluster: published the new public key {updated.WireGuardPublicKey}");
            }
        }
    }

    /// <summary>Adds the cluster's instruments to the node's meters (Gateway.Cluster): gateway_kvstore_up and the peer count.</summary>
    private void AddInstruments(GatewayMeters meters)
    {
        ArgumentNullException.ThrowIfNull(meters);
        const string area = GatewayMeters.ClusterArea;
        meters.Gauge(area, "gateway_kvstore_up", "1 while the cluster store (etcd) answers, 0 while the node runs on its last known state.",
            () => [meters.Sample(Client.IsUp ? 1.0 : 0.0)]);
        meters.Gauge(area, "gateway_cluster_peers", "Other nodes of the cluster that are peers of this node.",
            () => [meters.Sample((double)_peers.Count)]);
        meters.Gauge(area, "gateway_cluster_records_ignored", "Node records in the store refused by this node (logged with the reason).",
            () => [meters.Sample((double)_refused.Count)]);
        meters.Gauge(area, "gateway_cluster_ipcache_ignored", "Other nodes' ipcache entries the last load did not use (each logged once).",
            () => [meters.Sample((double)_source.IgnoredIpCacheEntries)]);
        meters.Gauge(area, "gateway_cluster_bandwidth_ignored", "Stored bandwidth records or annotation values the last look at the store ignored (each logged once).",
            () => [meters.Sample((double)(_bandwidth?.Refused ?? 0))]);
        meters.Counter(area, "gateway_cluster_identity_gc_runs_total", "Identity garbage collections this node ran (every 15 minutes).",
            () => [meters.Sample(Client.IdentityGcRuns)]);
        meters.Counter(area, "gateway_cluster_identities_collected_total", "Identity numbers this node's garbage collections freed (no node referenced them).",
            () => [meters.Sample(Client.IdentitiesCollected)]);
    }

    /// <summary>Clean stop: deregisters (other nodes drop this one at once) and closes the client.</summary>
    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        if (_loop is not null)
        {
            try
            {
                await _loop.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
        if (_self is not null)
        {
            try
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(3));
                await Client.DeregisterAsync(timeout.Token).ConfigureAwait(false);
                Log.Info($"cluster: deregistered node '{NodeName}'");
            }
            catch (Exception e)
            {
                Log.Warn($"cluster: deregistering failed ({e.Message}); the record ends with its lease");
            }
        }
        if (_services is not null)
        {
            await _services.DisposeAsync().ConfigureAwait(false);
        }
        if (_bandwidth is not null)
        {
            await _bandwidth.DisposeAsync().ConfigureAwait(false);
        }
        await Client.DisposeAsync().ConfigureAwait(false);
        _stop.Dispose();
    }
}
