using Gateway.Node.Configuration;
using Gateway.Node.Daemon;
using Gateway.LoadBalancer;
using Gateway.Node.Flows;
using Gateway.Policy;
using Gateway.Tunnel;

namespace Gateway.Node.Overlay;

/// <summary>
/// The control plane of an overlay node: loads the cluster's endpoints and policies into a
/// <see cref="PolicyEngine"/>, builds the <see cref="OverlayPipeline"/>, keeps its view of the
/// other nodes in step with the configuration, and reloads policy when its files change
/// (file watch) or on request (SIGHUP). A file that does not load leaves the previous policy
/// in force and says so in the log.
/// </summary>
public sealed partial class OverlayRuntime : IDisposable
{
    private readonly OverlaySection _settings;
    private readonly IOverlaySource _source;
    private readonly NodeLog _log;
    private readonly List<FileSystemWatcher> _watchers = [];
    private readonly Lock _reloadLock = new();
    private Timer? _debounce;
    private ConntrackCollector? _conntrackCollector;

    private OverlayRuntime(OverlaySection settings, IOverlaySource source, PolicyEngine policy, OverlayPipeline pipeline, NodeLog log)
    {
        _settings = settings;
        _source = source;
        Policy = policy;
        Pipeline = pipeline;
        _log = log;
    }

    public PolicyEngine Policy { get; }

    public OverlayPipeline Pipeline { get; }

    /// <summary>The flow log writer, unless the configuration turned it off.</summary>
    public FlowLog? FlowLog { get; private set; }

    /// <summary>Successful policy loads (the first included) and refused ones.</summary>
    public long PolicyLoads { get; private set; }

    public long PolicyLoadFailures { get; private set; }

    /// <summary>Where made-up packets for local workloads go (ICMP unreachable for a VIP without
    /// backends, the RST or ICMP error ending a flow whose backend is gone); null: not sent.</summary>
    public IHostInjector? Injector { get; set; }

    /// <summary>Flows to removed backends ended so far, and the packets sent to their clients.</summary>
    public long ServiceFlowsEnded => Interlocked.Read(ref _flowsEnded);

    public long ServiceTeardownsSent => Interlocked.Read(ref _teardownsSent);

    /// <summary>Raised (outside any lock) after a reload changed the service table, so routes to
    /// the VIPs can follow.</summary>
    public event Action? ServicesChanged;

    private long _flowsEnded;
    private long _teardownsSent;
    private long _injectFailures;

    /// <summary>Builds the runtime; a policy or endpoints file that does not load is an error here
    /// (the node does not start without its policy). <paramref name="source"/> says where endpoints
    /// and policies come from (default: the files of [Overlay]).</summary>
    public static OverlayRuntime Create(WgQuickConfig config, WireGuardEngine engine, string interfaceName, NodeLog log, TimeProvider? clock = null,
        IOverlaySource? source = null)
    {
        source ??= FileOverlaySource.Instance;
        var settings = config.Overlay ?? throw new ArgumentException("The configuration has no [Overlay] section.", nameof(config));
        var identities = new IdentityAllocator(settings.IdentityStorePath);
        var policy = new PolicyEngine(identities, new Conntrack(1 << 16), new FlowEventRing(1 << 13), clock) { EventsEncrypted = true };
        if (!TryLoadPolicy(settings, source, policy, out var services, out string? error))
        {
            throw new ConfigException(config.Path, settings.Line, $"overlay policy did not load: {error}");
        }
        var pipeline = new OverlayPipeline(engine, policy, new OverlayOptions
        {
            TunnelAddress = settings.TunnelAddress,
            PodCidrs = settings.PodCidrs,
            ClusterCidrs = settings.ClusterCidrs,
            VxlanPort = settings.VxlanPort,
            Strict = settings.Strict,
        }, clock);
        if (services is not null)
        {
            pipeline.Services = new ServiceLoadBalancer(services);
        }
        var runtime = new OverlayRuntime(settings, source, policy, pipeline, log) { PolicyLoads = 1 };
        runtime.ApplyPeers(config);
        if (settings.FlowLogPath != "off")
        {
            string path = settings.FlowLogPath ?? FlowLogPaths.FileFor(interfaceName);
            runtime.FlowLog = new FlowLog(policy.Events, () => policy.Current, new FlowLogOptions
            {
                FilePath = path,
                SocketPath = FlowLogPaths.SocketForFile(path),
                NodeName = settings.NodeName ?? interfaceName,
                Log = message => log.Warn($"flow log: {message}"),
            });
        }
        return runtime;
    }

    /// <summary>
    /// Services stored in etcd (cluster mode), set by the cluster agent when its service store
    /// changes: compiled together with the Services file on every load. Null: none.
    /// </summary>
    public IReadOnlyList<ServiceDefinition>? StoredServices { get; set; }

    private static bool TryLoadPolicy(OverlaySection settings, IOverlaySource source, PolicyEngine policy, out ServiceTable? services, out string? error,
        IReadOnlyList<ServiceDefinition>? stored = null)
    {
        services = null;
        try
        {
            var (policies, endpoints) = source.Load(settings, policy.Identities);
            // Services are compiled against the same endpoints before anything is applied: a bad
            // service file keeps the previous policy and services in force, like a bad policy.
            if (settings.ServicesPath is not null || stored is not null)
            {
                var definitions = new List<ServiceDefinition>();
                if (settings.ServicesPath is not null)
                {
                    definitions.AddRange(ServiceLoader.Load(settings.ServicesPath));
                }
                if (stored is not null)
                {
                    definitions.AddRange(stored);
                    ServiceLoader.CheckUnique(definitions);
                }
                services = ServiceTable.Compile(definitions, endpoints);
            }
            policy.Apply(policies, endpoints);
            error = null;
            return true;
        }
        catch (Exception e) when (e is PolicyLoadException or ServiceLoadException or IOException or UnauthorizedAccessException or InvalidDataException)
        {
            error = e.Message;
            return false;
        }
    }

    /// <summary>
    /// Swaps in a reloaded service table. Translated flows whose backend left its service are
    /// removed from conntrack (new packets of them are translated afresh); flows to backends that
    /// stay are untouched.
    /// </summary>
    private void ApplyServices(ServiceTable next)
    {
        var lb = Pipeline.Services;
        if (lb is null)
        {
            Pipeline.Services = new ServiceLoadBalancer(next);
            return;
        }
        lb.Replace(next);
        var ended = new List<CtNat>();
        var acks = new Dictionary<CtNat, uint>();
        // Gone: no longer a backend of that frontend, and not merely not ready (a not-ready pod takes
        // no new flows, but the ones it has run on, as Kubernetes lets a terminating pod drain).
        var endpoints = Policy.Current.Endpoints;
        Policy.Conntrack.EndTranslatedFlows(nat => !next.HasBackend(nat.ServiceAddress, nat.ServicePort, nat.Protocol, nat.BackendAddress, nat.BackendPort) &&
            !(endpoints.TryGetByIp(nat.BackendAddress, out var ep) && !ep.Ready), ended, acks);
        Span<byte> packet = stackalloc byte[ServiceTeardown.MaxLength];
        int sent = 0;
        int hairpins = 0;
        foreach (var nat in ended)
        {
            if (OverlayPipeline.IsServiceLoopback(nat.ClientAddress))
            {
                // The flow entry of a pod that reached itself (source SNAT'd to the service loopback):
                // its service entry names the real client, who is told once, from that entry.
                hairpins++;
                continue;
            }
            lb.Affinity.RemoveBackend(nat.BackendAddress, nat.BackendPort);
            // Tell the client at once (TCP RST, ICMP unreachable for UDP) rather than leave it hanging.
            int length = ServiceTeardown.Write(nat, acks.TryGetValue(nat, out uint ack) ? ack : null, packet);
            if (length > 0 && Injector is { } injector)
            {
                if (injector.Inject(packet[..length]))
                {
                    sent++;
                }
                else
                {
                    Interlocked.Increment(ref _injectFailures);
                }
            }
        }
        Interlocked.Add(ref _flowsEnded, ended.Count - hairpins);
        Interlocked.Add(ref _teardownsSent, sent);
        if (ended.Count > 0)
        {
            _log.Info($"services reloaded: {ended.Count - hairpins} flow(s) to removed backends ended, {sent} client(s) told (TCP RST / ICMP unreachable)");
        }
    }

    /// <summary>Hands a packet for a local workload to the kernel: a packet between two pods of this
    /// node (a local service backend, or any pod-to-pod packet while the node has services), or one
    /// the egress stage built (the ICMP unreachable for a VIP without backends). The destination
    /// pod's ingress bandwidth limit applies first, as to a packet that came through the tunnel.
    /// Allocation-free.</summary>
    internal void Inject(ReadOnlySpan<byte> packet)
    {
        if (Bandwidth is { Active: true } bandwidth && !bandwidth.AdmitIngress(packet))
        {
            return; // over the pod's ingress limit: counted and reported as a flow event
        }
        if (Injector is not { } injector || !injector.Inject(packet))
        {
            Interlocked.Increment(ref _injectFailures);
        }
    }

    /// <summary>/32 and /128 routes for every VIP in the service table in force (none without services).</summary>
    public IEnumerable<Gateway.Datapath.IpPrefix> ServiceRoutes()
    {
        if (Pipeline.Services?.Table is not { } table)
        {
            yield break;
        }
        foreach (var svc in table.Services)
        {
            foreach (var vip in svc.ClusterIps)
            {
                yield return new Gateway.Datapath.IpPrefix(vip, vip.IsV6 ? 128 : 32);
            }
        }
        if (LocalPodRoutingWanted)
        {
            // Replies of pods that reached themselves through their service (hairpin) come back here
            // (per family the node has pods in: a host without IPv6 takes no IPv6 route).
            if (PodCidrs.Any(p => p.Address.IsV4))
            {
                yield return new Gateway.Datapath.IpPrefix(OverlayPipeline.ServiceLoopbackV4, 32);
            }
            if (PodCidrs.Any(p => p.Address.IsV6))
            {
                yield return new Gateway.Datapath.IpPrefix(OverlayPipeline.ServiceLoopbackV6, 128);
            }
        }
    }

    /// <summary>
    /// True while the node must route traffic between its own pods through the tunnel device
    /// (<see cref="Gateway.Node.Link.LocalPodRules"/>): it has services, so a backend may be on the
    /// client's own node and its replies must be reverse-translated here (WireGuard and IPsec mode
    /// alike: both egress stages hand local deliveries to the kernel).
    /// </summary>
    internal bool LocalPodRoutingWanted => Pipeline.Services is not null;

    /// <summary>This node's pod CIDRs (what <see cref="Gateway.Node.Link.LocalPodRules"/> routes through the tunnel).</summary>
    internal IReadOnlyList<Gateway.Datapath.IpPrefix> PodCidrs => Pipeline.Options.PodCidrs;

    /// <summary>Per-service metrics (meter Gateway.LoadBalancer): gateway_service_backend_selections_total{service},
    /// and the flows ended because their backend went away. Read at scrape time; nothing per packet.</summary>
    internal void AddServiceMetrics(Gateway.Node.Metrics.GatewayMeters meters)
    {
        const string area = "LoadBalancer";
        meters.Counter(area, "gateway_service_backend_selections_total", "Backends chosen for new flows to a service (ClusterIP), by service (namespace/name).",
            () => Pipeline.Services is { } lb
                ? lb.SelectionCounts().Select(c => meters.Sample(c.Selections, ("service", c.Service))).ToList()
                : []);
        meters.Counter(area, "gateway_service_flows_ended_total", "Translated flows ended because their backend left the service.",
            () => [meters.Sample(ServiceFlowsEnded)]);
        meters.Counter(area, "gateway_service_teardowns_sent_total", "TCP RSTs and ICMP port unreachables sent to clients of ended flows.",
            () => [meters.Sample(ServiceTeardownsSent)]);
        meters.Counter(area, "gateway_service_inject_failures_total", "Packets for local workloads (ICMP unreachable, RST) that could not be handed to the kernel.",
            () => [meters.Sample(Interlocked.Read(ref _injectFailures))]);
    }

    /// <summary>Points the pipeline at the overlay peers of <paramref name="config"/>.</summary>
    public void ApplyPeers(WgQuickConfig config)
    {
        var peers = new List<OverlayPeer>();
        foreach (var section in config.Peers)
        {
            if (section.Overlay.TunnelAddress is { } tunnel)
            {
                peers.Add(new OverlayPeer(new PublicKey(section.PublicKey.Bytes), tunnel, section.Overlay.PodCidrs.ToArray()));
            }
        }
        Pipeline.SetPeers(peers);
    }

    /// <summary>Reloads endpoints and policies; on failure the previous policy stays in force.</summary>
    public bool ReloadPolicy()
    {
        bool loaded;
        bool servicesChanged = false;
        lock (_reloadLock)
        {
            ServiceTable? services;
            string? error;
            try
            {
                loaded = TryLoadPolicy(_settings, _source, Policy, out services, out error, StoredServices);
                if (loaded && services is not null)
                {
                    ApplyServices(services);
                    servicesChanged = true;
                }
            }
            catch (Exception e)
            {
                // Runs on a timer thread: an unexpected failure of a loader or compiler must not
                // take the daemon down; what was in force stays.
                loaded = false;
                error = $"{e.GetType().Name}: {e.Message}";
            }
            if (loaded)
            {
                PolicyLoads++;
                ApplyBandwidth();
                _log.Info($"policy reloaded: {Policy.Current.Endpoints.All.Count} endpoint(s), version {Policy.Current.Version}");
            }
            else
            {
                PolicyLoadFailures++;
                _log.Error($"policy reload failed, previous policy stays in force: {error}");
            }
        }
        if (servicesChanged)
        {
            // Outside the lock: the listener (route sync) takes the node's reload lock.
            ServicesChanged?.Invoke();
        }
        return loaded;
    }

    /// <summary>Reloads policy shortly after its files change (editors write in several steps).</summary>
    public void WatchFiles()
    {
        foreach (var path in new[] { _settings.EndpointsPath, _settings.PolicyPath, _settings.ServicesPath })
        {
            if (path is null)
            {
                continue;
            }
            bool isDirectory = Directory.Exists(path);
            string directory = isDirectory ? path : Path.GetDirectoryName(Path.GetFullPath(path))!;
            var watcher = new FileSystemWatcher(directory)
            {
                Filter = isDirectory ? "*" : Path.GetFileName(path),
                IncludeSubdirectories = isDirectory,
                NotifyFilter = NotifyFilters.LastWrite | NotifyFilters.FileName | NotifyFilters.Size | NotifyFilters.CreationTime,
            };
            watcher.Changed += (_, _) => Schedule();
            watcher.Created += (_, _) => Schedule();
            watcher.Deleted += (_, _) => Schedule();
            watcher.Renamed += (_, _) => Schedule();
            watcher.EnableRaisingEvents = true;
            _watchers.Add(watcher);
        }
    }

    private void Schedule()
    {
        lock (_reloadLock)
        {
            _debounce ??= new Timer(_ => ReloadPolicy());
            _debounce.Change(TimeSpan.FromMilliseconds(300), Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>Starts freeing expired conntrack entries periodically (see <see cref="ConntrackCollector"/>);
    /// <paramref name="clock"/> must be the pipeline's clock. Idempotent; stopped by <see cref="Dispose"/>.</summary>
    public ConntrackCollector StartConntrackCollector(TimeProvider clock, TimeSpan? interval = null)
    {
        lock (_reloadLock)
        {
            return _conntrackCollector ??= new ConntrackCollector(Policy.Conntrack, clock, interval, _log);
        }
    }

    /// <summary>The running collector, once started.</summary>
    public ConntrackCollector? ConntrackCollector => _conntrackCollector;

    public void Dispose()
    {
        _conntrackCollector?.Dispose();
        FlowLog?.Dispose();
        foreach (var watcher in _watchers)
        {
            watcher.Dispose();
        }
        _debounce?.Dispose();
    }
}
