using System.Diagnostics;
using System.Security.Cryptography;
using Gateway.Datapath;
using Gateway.Datapath.Devices;
using Gateway.Node.Configuration;
using Gateway.Node.Link;
using Gateway.Node.Overlay;
using Gateway.Tunnel;
using Gateway.Tunnel.Uapi;

namespace Gateway.Node.Daemon;

/// <summary>
/// The node's configuration side: applies a wg-quick file to the engine (and the overlay's view
/// of the other nodes), keeps the kernel's routes in step with the peers' allowed IPs, installs
/// strict mode's fallback routes, runs the wg-quick hooks, and serialises reloads with UAPI
/// requests. Nothing here is on the packet path.
/// </summary>
internal sealed class NodeConfigurator
{
    /// <summary>Route changes beyond this many go to one <c>ip -batch</c> process.</summary>
    private const int RouteBatchThreshold = 16;

    private readonly WireGuardEngine _engine;
    private readonly OverlayRuntime? _overlay;
    private readonly NodeLog _log;
    private readonly WgQuickConfig _initial;
    private readonly string _requestedName;
    private readonly HashSet<IpPrefix> _routes = [];
    private StrictRoutes? _strictRoutes;
    private readonly Lock _reloadLock = new();
    private WgQuickConfig _config;

    public NodeConfigurator(WireGuardEngine engine, OverlayRuntime? overlay, WgQuickConfig config, string requestedName, NodeLog log)
    {
        _engine = engine;
        _overlay = overlay;
        _config = config;
        _initial = config;
        _requestedName = requestedName;
        _log = log;
    }

    /// <summary>The interface routes go to; null until the device exists.</summary>
    public string? InterfaceName { get; set; }

    /// <summary>The configuration in force.</summary>
    public WgQuickConfig Config => _config;

    private string Name => InterfaceName ?? _requestedName;

    /// <summary>Puts <paramref name="config"/>'s key and peers into the engine; with a
    /// <paramref name="previous"/> configuration, peers not in the new one are removed.</summary>
    public void Apply(WgQuickConfig config, WgQuickConfig? previous)
    {
        var engine = _engine;
        var key = config.Interface.PrivateKey!;
        Span<byte> current = stackalloc byte[32];
        bool samePrivate = engine.TryCopyPrivateKey(current) && System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(current, key.Bytes);
        CryptographicOperations.ZeroMemory(current);
        if (!samePrivate)
        {
            engine.SetPrivateKey(key.Bytes);
        }
        var wanted = new HashSet<PublicKey>();
        foreach (var section in config.Peers)
        {
            wanted.Add(ApplyPeer(section));
        }
        if (previous is not null)
        {
            foreach (var peer in engine.Peers)
            {
                if (!wanted.Contains(peer.PublicKey))
                {
                    engine.RemovePeer(peer.PublicKey);
                }
            }
        }
    }

    /// <summary>Adds or updates one peer of the engine from its section; returns its key.</summary>
    private PublicKey ApplyPeer(PeerSection section)
    {
        var engine = _engine;
        var publicKey = new PublicKey(section.PublicKey.Bytes);
        var peer = engine.GetOrAddPeer(publicKey);
        Span<byte> psk = stackalloc byte[32];
        if (section.PresharedKey is { } presharedKey)
        {
            presharedKey.Bytes.CopyTo(psk);
        }
        engine.SetPresharedKey(peer, psk);
        CryptographicOperations.ZeroMemory(psk);
        if (section.Endpoint is { } endpoint)
        {
            engine.SetEndpoint(peer, endpoint);
        }
        engine.SetPersistentKeepalive(peer, section.PersistentKeepalive);
        var allowed = peer.AllowedIps;
        if (!allowed.ToHashSet().SetEquals(section.AllowedIps))
        {
            engine.ClearAllowedIps(peer);
            foreach (var prefix in section.AllowedIps)
            {
                engine.AddAllowedIp(peer, prefix);
            }
        }
        return publicKey;
    }

    /// <summary>
    /// Cluster mode's deltas: removes the peers with the keys in <paramref name="removed"/> and adds
    /// or updates those in <paramref name="upserts"/> (the node takes ownership of the sections),
    /// in the engine, the configuration in force, the overlay's view and the routes, without
    /// re-reading anything else; peers not named keep their sessions. Policy is the caller's.
    /// A route that cannot be set is reported (LinkException) with the peers applied; the next
    /// change retries the missing routes.
    /// </summary>
    public void ApplyPeerChanges(IReadOnlyList<PeerSection> upserts, IReadOnlyCollection<PublicKey> removed)
    {
        lock (_reloadLock)
        {
            var replaced = new HashSet<PublicKey>(removed);
            foreach (var section in upserts)
            {
                replaced.Add(new PublicKey(section.PublicKey.Bytes));
            }
            _config.Peers.RemoveAll(section =>
            {
                if (!replaced.Contains(new PublicKey(section.PublicKey.Bytes)))
                {
                    return false;
                }
                section.PublicKey.Dispose();
                section.PresharedKey?.Dispose();
                return true;
            });
            foreach (var key in removed)
            {
                _engine.RemovePeer(key);
            }
            foreach (var section in upserts)
            {
                ApplyPeer(section);
                _config.Peers.Add(section);
            }
            _overlay?.ApplyPeers(_config);
            SyncRoutes();
        }
    }

    /// <summary>
    /// Applies a new configuration file without dropping established sessions: peers that stay
    /// keep their keypairs, removed peers are dropped, routes follow the allowed IPs. A route
    /// that cannot be set puts the previous configuration back and rethrows.
    /// </summary>
    public void Reload(WgQuickConfig next)
    {
        lock (_reloadLock)
        {
            var previous = _config;
            try
            {
                Apply(next, previous);
                _config = next;
                _overlay?.ApplyPeers(next);
                ApplyClusterCidrs();
                SyncRoutes();
                SyncStrictRoutes();
            }
            catch (Exception)
            {
                // A route the new file needs could not be set, or a stage failed half-way: put the
                // previous configuration back (peers, overlay peers, routes) so that nothing stays
                // half-applied, and let the caller report the failure.
                _config = previous;
                try
                {
                    Apply(previous, next);
                    _overlay?.ApplyPeers(previous);
                    ApplyClusterCidrs();
                    SyncRoutes();
                    SyncStrictRoutes();
                }
                catch (Exception rollback)
                {
                    _log.Error($"{Name}: restoring the previous configuration failed as well: {rollback.Message}");
                }
                throw;
            }
            _overlay?.ReloadPolicy();
            if (!ReferenceEquals(previous, _initial))
            {
                previous.Dispose();
            }
            _log.Info($"{Name} reloaded from {next.Path}: {_engine.PeerCount} peer(s)");
        }
    }

    /// <summary>Runs a UAPI request under the reload lock; a set is followed by a route sync.</summary>
    public string HandleUapi(Func<WireGuardEngine, string, string> handler, string request)
    {
        lock (_reloadLock)
        {
            string response = handler(_engine, request);
            if (request.StartsWith("set=1", StringComparison.Ordinal))
            {
                int errno = SyncSocket();
                if (errno != UapiErrno.Ok && response.StartsWith("errno=0\n", StringComparison.Ordinal))
                {
                    response = "errno=" + errno.ToString(System.Globalization.CultureInfo.InvariantCulture) + "\n\n";
                }
                try
                {
                    SyncRoutes();
                }
                catch (LinkException e)
                {
                    _log.Warn($"{Name}: route update after UAPI set failed: {e.Message}");
                }
            }
            return response;
        }
    }

    /// <summary>The UDP bind whose port and mark follow the engine's listen_port and fwmark.</summary>
    public IUdpBind? Bind { get; set; }

    /// <summary>
    /// Puts a UAPI-set <c>fwmark</c> (SO_MARK) and <c>listen_port</c> (a rebind) on the socket.
    /// What the socket refuses is undone in the engine too, so <c>wg show</c> never reports a
    /// port or mark that is not in force, and the request answers with the errno.
    /// </summary>
    public int SyncSocket()
    {
        if (Bind is not { } socket)
        {
            return UapiErrno.Ok;
        }
        int errno = UapiErrno.Ok;
        if (_engine.FwMark != socket.Mark)
        {
            try
            {
                socket.SetMark(_engine.FwMark);
                _log.Info($"{Name}: fwmark 0x{_engine.FwMark:x}");
            }
            catch (DeviceException e)
            {
                _log.Warn($"{Name}: fwmark 0x{_engine.FwMark:x} not set: {e.Message}");
                _engine.FwMark = socket.Mark;
                errno = UapiErrno.Invalid;
            }
        }
        if (_engine.ListenPort != socket.LocalPort)
        {
            ushort wanted = _engine.ListenPort;
            try
            {
                _engine.ListenPort = socket.Rebind(wanted);
                _log.Info($"{Name}: listening on UDP {_engine.ListenPort}");
            }
            catch (DeviceException e)
            {
                _log.Warn($"{Name}: listen port {wanted} not taken, staying on {socket.LocalPort}: {e.Message}");
                _engine.ListenPort = socket.LocalPort;
                errno = UapiErrno.PortInUse;
            }
        }
        return errno;
    }

    /// <summary>Routes every peer's allowed IPs to the interface (wg-quick's Table=auto), except
    /// default routes, which would capture the tunnel's own underlay traffic.</summary>
    public void SyncRoutes()
    {
        lock (_reloadLock)
        {
            SyncRoutesCore();
            SyncLocalPodRules();
        }
    }

    private LocalPodRules? _localPodRules;

    /// <summary>While the overlay has services, traffic between this node's pods goes through the
    /// tunnel device (<see cref="LocalPodRules"/>), so local backends' replies are reverse-translated.</summary>
    private void SyncLocalPodRules()
    {
        if (_overlay is null || _config.Interface.Table == "off" || InterfaceName is not { } device)
        {
            return;
        }
        _localPodRules ??= new LocalPodRules(device);
        _localPodRules.Reconcile(_overlay.LocalPodRoutingWanted ? _overlay.PodCidrs : []);
    }

    /// <summary>Removes the local pod rules (the node stops).</summary>
    public void ClearLocalPodRules()
    {
        lock (_reloadLock)
        {
            _localPodRules?.Clear();
        }
    }

    private void SyncRoutesCore()
    {
        string? table = _config.Interface.Table;
        if (table == "off" || InterfaceName is not { } device)
        {
            return;
        }
        var wanted = new HashSet<IpPrefix>();
        var overlayPeers = new Dictionary<PublicKey, OverlayPeer>();
        if (_overlay is not null)
        {
            foreach (var overlayPeer in _overlay.Pipeline.Peers)
            {
                overlayPeers.TryAdd(overlayPeer.PublicKey, overlayPeer);
            }
        }
        foreach (var peer in _engine.Peers)
        {
            var routed = peer.AllowedIps.ToList();
            if (overlayPeers.TryGetValue(peer.PublicKey, out var overlayPeer))
            {
                routed.AddRange(overlayPeer.PodCidrs);
            }
            foreach (var prefix in routed)
            {
                if (prefix.Length == 0)
                {
                    _log.Warn($"{device}: not routing {prefix} (a default route through the tunnel needs policy routing; set Table = off and add rules yourself)");
                    continue;
                }
                wanted.Add(prefix);
            }
        }
        if (_overlay is not null)
        {
            // Service VIPs: the node's workloads reach a ClusterIP through the tunnel device, where
            // the overlay translates it to a backend.
            wanted.UnionWith(_overlay.ServiceRoutes());
        }
        var remove = _routes.Except(wanted).ToList();
        var add = wanted.Except(_routes).ToList();
        if (remove.Count + add.Count > RouteBatchThreshold)
        {
            // Many changes (a cluster's worth of nodes): one ip process for all of them. Deletes
            // are best effort, as below. If an add fails, the loop below redoes the adds one by
            // one (replace is idempotent), so the error names the route and _routes stays exact.
            IpCommand.TryRunBatch(remove.Select(p => IpCommand.DeleteRouteLine(device, p, table)).ToList(), force: true, out _);
            foreach (var prefix in remove)
            {
                _routes.Remove(prefix);
            }
            remove.Clear();
            if (IpCommand.TryRunBatch(add.Select(p => IpCommand.AddRouteLine(device, p, table)).ToList(), force: false, out _))
            {
                _routes.UnionWith(add);
                return;
            }
        }
        foreach (var prefix in remove)
        {
            IpCommand.DeleteRoute(device, prefix, table);
            _routes.Remove(prefix);
        }
        foreach (var prefix in add)
        {
            IpCommand.AddRoute(device, prefix, table);
            _routes.Add(prefix);
        }
    }

    /// <summary>
    /// Strict mode: every cluster CIDR of the configuration in force gets a fail-closed
    /// <c>prohibit</c> route (<see cref="StrictRoutes"/>), and those of CIDRs the configuration no
    /// longer names (or all, with strict mode off) are removed. Run at start (adopting what an
    /// earlier run left) and on every reload. The routes are never removed on stop: only
    /// <c>gateway down</c> does that.
    /// </summary>
    public void SyncStrictRoutes()
    {
        if (_overlay is null || InterfaceName is not { } device)
        {
            return;
        }
        _strictRoutes ??= new StrictRoutes(device);
        var settings = _config.Overlay;
        _strictRoutes.Reconcile(settings is { Strict: true } ? settings.ClusterCidrs : []);
    }

    /// <summary>Points the overlay's "inside the cluster" table at the configuration in force.</summary>
    private void ApplyClusterCidrs()
    {
        if (_overlay is not null && _config.Overlay is { } settings)
        {
            _overlay.Pipeline.SetClusterCidrs(settings.ClusterCidrs);
        }
    }

    /// <summary>Runs wg-quick's PreUp/PostUp/PreDown/PostDown commands (%i is the interface).</summary>
    public static void RunHooks(List<string> commands, string stage, string interfaceName, NodeLog log)
    {
        foreach (var command in commands)
        {
            string expanded = command.Replace("%i", interfaceName, StringComparison.Ordinal);
            log.Info($"{stage}: {expanded}");
            using var process = Process.Start(new ProcessStartInfo("/bin/bash", ["-c", expanded]) { UseShellExecute = false })
                ?? throw new LinkException($"{stage} hook could not start");
            process.WaitForExit();
            if (process.ExitCode != 0)
            {
                throw new LinkException($"{stage} hook '{expanded}' failed with exit code {process.ExitCode}");
            }
        }
    }

    /// <summary>Disposes the configuration in force if a reload brought it (the initial one is the caller's).</summary>
    public void DisposeReloaded()
    {
        if (!ReferenceEquals(_config, _initial))
        {
            _config.Dispose();
        }
    }
}
