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
public sealed class OverlayRuntime : IDisposable
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

    private static bool TryLoadPolicy(OverlaySection settings, IOverlaySource source, PolicyEngine policy, out ServiceTable? services, out string? error)
    {
        services = null;
        try
        {
            var (policies, endpoints) = source.Load(settings, policy.Identities);
            // Services are compiled against the same endpoints before anything is applied: a bad
            // service file keeps the previous policy and services in force, like a bad policy.
            if (settings.ServicesPath is not null)
            {
                services = ServiceTable.Compile(ServiceLoader.Load(settings.ServicesPath), endpoints);
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
        Policy.Conntrack.EndTranslatedFlows(nat => !next.HasBackend(nat.ServiceAddress, nat.ServicePort, nat.Protocol, nat.BackendAddress, nat.BackendPort), ended);
        foreach (var nat in ended)
        {
            lb.Affinity.RemoveBackend(nat.BackendAddress, nat.BackendPort);
        }
        if (ended.Count > 0)
        {
            _log.Info($"services reloaded: {ended.Count} flow(s) to removed backends ended");
        }
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
        lock (_reloadLock)
        {
            bool loaded;
            ServiceTable? services;
            string? error;
            try
            {
                loaded = TryLoadPolicy(_settings, _source, Policy, out services, out error);
                if (loaded && services is not null)
                {
                    ApplyServices(services);
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
                _log.Info($"policy reloaded: {Policy.Current.Endpoints.All.Count} endpoint(s), version {Policy.Current.Version}");
                return true;
            }
            PolicyLoadFailures++;
            _log.Error($"policy reload failed, previous policy stays in force: {error}");
            return false;
        }
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
