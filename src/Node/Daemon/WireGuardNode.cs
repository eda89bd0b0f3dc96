using Gateway.Datapath.Devices;
using Gateway.Datapath;
using Gateway.Node.Configuration;
using Gateway.Node.Ipsec;
using Gateway.Node.Link;
using Gateway.Node.Metrics;
using Gateway.Node.Overlay;
using Gateway.Node.Uapi;
using Gateway.Tunnel;

namespace Gateway.Node.Daemon;

/// <summary>How to run a <see cref="WireGuardNode"/>.</summary>
public sealed class WireGuardNodeOptions
{
    public required string InterfaceName { get; init; }
    public required WgQuickConfig Config { get; init; }
    public string UapiDirectory { get; init; } = UapiSocketServer.DefaultDirectory;
    /// <summary>Starts an exporter for the node's instruments (<see cref="WireGuardNode.Meters"/>) once they
    /// exist and before the node reports itself up, so the first scrape after the "up" line finds them; the
    /// node disposes it when it stops, and its <see cref="object.ToString"/> is named in the "up" line. The
    /// daemon passes its Prometheus endpoint on Kestrel (Gateway.Hosting), which Gateway.Node does not
    /// depend on. Null: no exporter (the meters still publish to any listener in the process, dotnet-counters too).</summary>
    public Func<GatewayMeters, IDisposable>? MetricsExporter { get; init; }
    public NodeLog Log { get; init; } = new(Console.Error);
    /// <summary>Datagrams and packets moved per system call.</summary>
    public int BatchSize { get; init; } = 64;
    /// <summary>Threads that seal and open; null = one per CPU; 0 = the two I/O threads do it themselves.</summary>
    public int? CryptoWorkers { get; init; }
    /// <summary>TCP segmentation and checksum offload on the TUN device (IFF_VNET_HDR): the kernel
    /// hands over TCP super-packets of up to 64 KiB, cut into segments in user space.</summary>
    public bool TunOffloads { get; init; } = true;
    /// <summary>Batches in flight per direction between reading and the in-order step.</summary>
    public int QueueBatches { get; init; } = 8;
    /// <summary>Handles UAPI requests; null leaves the socket closed.</summary>
    public Func<WireGuardEngine, string, string>? UapiHandler { get; init; }
    /// <summary>The TUN device to use instead of creating a kernel one (the node takes ownership).
    /// A device that is not a kernel interface (<see cref="IBatchTunDevice.IsKernelDevice"/>) gets
    /// no addresses, MTU or routes: that is how the node runs without root in tests.</summary>
    public IBatchTunDevice? Tun { get; init; }
    /// <summary>The UDP bind to use instead of binding a socket (the node takes ownership).</summary>
    public IUdpBind? Bind { get; init; }
    /// <summary>The protocol clock; null = the coarse monotonic clock. Tests inject a fake one and
    /// drive the timers with <see cref="WireGuardNode.Tick"/>.</summary>
    public TimeProvider? Clock { get; init; }
    /// <summary>Tick the engine's timers every 100 ms on a thread of the node's own (off when a
    /// test ticks a fake clock itself).</summary>
    public bool TimerThread { get; init; } = true;
    /// <summary>Where overlay endpoints and policies come from; null = the [Overlay] files.
    /// Cluster mode passes the etcd-backed source (Gateway.Node.Cluster).</summary>
    public IOverlaySource? OverlaySource { get; init; }
    /// <summary>Where the overlay sends packets it makes up for local workloads (ICMP unreachable,
    /// RST); default: raw IP sockets when the TUN is a kernel device, none otherwise.</summary>
    public Overlay.IHostInjector? HostInjector { get; init; }
    /// <summary>IPsec mode: this node's underlay address (null = the kernel's source address towards
    /// the first peer). Tests over a memory bind set it.</summary>
    public IpAddress? IpsecNodeAddress { get; init; }
    /// <summary>IPsec mode: this run's boot id (null = a fresh random UUID, as the daemon uses).</summary>
    public string? IpsecBootId { get; init; }
}

/// <summary>
/// A complete userspace WireGuard interface: a TUN device and a UDP socket joined by the
/// protocol engine. This type only wires the parts together and owns their lifetime; the work
/// is split along the packet path as wireguard-go splits device/: <see cref="SendPath"/> (TUN,
/// egress stage, seal, send), <see cref="ReceivePath"/> (receive, open, ingress stage, TUN),
/// <see cref="HandshakeTimers"/>, <see cref="NodeConfigurator"/> (config, routes, reload) and
/// <see cref="NodeMetrics"/>. Plain and overlay mode differ only in the stages plugged in
/// (<see cref="PlainEgress"/>/<see cref="PlainIngress"/> or <see cref="OverlayEgress"/>/<see cref="OverlayIngress"/>).
/// The interface is configured from a wg-quick file and afterwards through the UAPI socket, so
/// the stock `wg` tool works against it.
/// </summary>
public sealed class WireGuardNode : IAsyncDisposable
{
    /// <summary>WireGuard's per-packet overhead on IPv6 underlays (40 IP + 8 UDP + 32 WG).</summary>
    public const int WireGuardOverhead = 80;

    /// <summary>Metric of strict mode's fallback routes: worse than any route that carries traffic.</summary>
    public const int StrictRouteMetric = StrictRoutes.Metric;

    private readonly WireGuardNodeOptions _options;
    private readonly NodeLog _log;
    private readonly List<Action> _undo = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Thread> _threads = [];
    private WireGuardEngine? _engine;
    private IBatchTunDevice? _tun;
    private IUdpBind? _bind;
    private UapiSocketServer? _uapi;
    private GatewayMeters? _meters;
    private IDisposable? _metrics;
    private OverlayRuntime? _overlay;
    private IpsecOverlay? _ipsec;
    private NodeConfigurator? _configurator;
    private SendPath? _send;
    private ReceivePath? _receive;
    private int _disposed;

    private WireGuardNode(WireGuardNodeOptions options)
    {
        _options = options;
        _log = options.Log;
    }

    public string InterfaceName => _tun?.Name ?? _options.InterfaceName;

    public WireGuardEngine Engine => _engine ?? throw new InvalidOperationException("not started");

    public int Mtu { get; private set; }

    public ushort ListenPort => _bind?.LocalPort ?? 0;

    /// <summary>Runs the engine's timers once (what the timer thread does every 100 ms).</summary>
    public void Tick() => Engine.Tick();

    /// <summary>The overlay control plane, when the configuration has an [Overlay] section.</summary>
    public OverlayRuntime? Overlay => _overlay;

    /// <summary>IPsec mode's ESP tunnel and keys ([Overlay] Encryption = ipsec), else null.</summary>
    public IpsecOverlay? Ipsec => _ipsec;

    /// <summary>Cancelled when the node stops on its own (a data-path thread failed).</summary>
    public CancellationToken Failed => _stop.Token;

    private WgQuickConfig Config => _configurator?.Config ?? _options.Config;

    /// <summary>Brings the interface up. On any failure everything done so far is undone and
    /// the exception propagates: the node never runs half-configured.</summary>
    public static WireGuardNode Start(WireGuardNodeOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var node = new WireGuardNode(options);
        try
        {
            node.StartCore();
            return node;
        }
        catch
        {
            node.Undo();
            throw;
        }
    }

    private void StartCore()
    {
        var config = _options.Config;
        var iface = config.Interface;
        NodeConfigurator.RunHooks(iface.PreUp, "PreUp", _options.InterfaceName, _log);

        if (_options.Tun is { } givenTun)
        {
            _tun = givenTun;
        }
        else
        {
            var kernelTun = TunDevice.Create(_options.InterfaceName, vnetHeader: _options.TunOffloads);
            _tun = kernelTun;
            if (kernelTun.HasVnetHeader && !kernelTun.TryEnableOffloads())
            {
                _log.Warn($"{kernelTun.Name}: the kernel refused TUN offloads; one packet per read");
            }
        }
        var tun = _tun;
        _undo.Add(tun.Dispose);
        bool link = tun.IsKernelDevice;
        Task? routes = null;

        bool overlay = config.Overlay is not null;
        // In overlay mode the TUN carries workload packets; each gains 50 bytes of VXLAN
        // framing before WireGuard sees it (Cilium's 80 + 50 on a 1500-byte link: 1370).
        Mtu = iface.Mtu ?? (link ? DefaultMtu() : 1420) - (overlay ? VxlanFrame.Overhead : 0);
        // The data path reads the clock once per packet: the coarse monotonic clock costs a
        // fifth of the high-resolution one and WireGuard's timers need only milliseconds.
        var clock = _options.Clock ?? CoarseTimeProvider.Instance;
        var timers = new HandshakeTimers();
        _engine = new WireGuardEngine(timers, new WireGuardEngineOptions
        {
            Mtu = Mtu + (overlay ? VxlanFrame.Overhead : 0),
            Clock = clock,
        });
        _undo.Add(() => _engine.Dispose());
        if (overlay)
        {
            _overlay = OverlayRuntime.Create(config, _engine, _options.InterfaceName, _log, clock, _options.OverlaySource);
            _undo.Add(() => _overlay.Dispose());
            if (_options.HostInjector is null && tun.IsKernelDevice)
            {
                var injector = new RawSocketInjector();
                _undo.Add(injector.Dispose);
                _overlay.Injector = injector;
            }
            else
            {
                _overlay.Injector = _options.HostInjector;
            }
            if (config.Overlay!.Encryption == OverlayEncryption.Ipsec)
            {
                _ipsec = IpsecOverlay.Create(config, _options.IpsecNodeAddress, _log, clock, _options.IpsecBootId);
                _undo.Add(_ipsec.Dispose);
            }
        }

        // IPsec mode: ESP (IP protocol 50) on a raw socket; WireGuard's own messages never leave.
        _bind = _options.Bind ?? (_ipsec is not null
            ? new RawEspSocket(batchSize: _options.BatchSize)
            : new UdpBatchSocket(iface.ListenPort ?? 0, bindAddress: null, batchSize: _options.BatchSize));
        var bind = _bind;
        _undo.Add(bind.Dispose);
        if (_ipsec is null)
        {
            timers.Attach(bind);
        }
        _engine.ListenPort = bind.LocalPort;
        if (iface.FwMark is uint mark && mark != 0)
        {
            bind.SetMark(mark);
            _engine.FwMark = mark;
        }
        _configurator = new NodeConfigurator(_engine, _overlay, config, _options.InterfaceName, _log) { Bind = bind };
        _configurator.Apply(config, previous: null);

        if (link)
        {
            foreach (var address in iface.Addresses)
            {
                IpCommand.AddAddress(tun.Name, address);
            }
            IpCommand.SetMtu(tun.Name, Mtu);
            IpCommand.SetUp(tun.Name);
            _configurator.InterfaceName = tun.Name;
            var configurator = _configurator;
            _undo.Add(() => configurator.ClearLocalPodRules());
            // The routes (one per peer prefix: 10,000 for a 5,000-node cluster) are installed by
            // `ip -batch` while the rest of the node starts; the node is up only once they are in.
            routes = Task.Run(configurator.SyncRoutes);
            var installing = routes;
            _undo.Add(() => ((Task)installing).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing).GetAwaiter().GetResult());
        }

        var meters = new GatewayMeters(() => InterfaceName);
        _meters = meters;
        _undo.Add(meters.Dispose);
        var metrics = new NodeMetrics(meters, _engine, _overlay, tun, bind);
        _ipsec?.AddMetrics(meters);
        if (_options.MetricsExporter is { } exporter)
        {
            _metrics = exporter(meters);
            _undo.Add(_metrics.Dispose);
        }

        if (_overlay is not null)
        {
            // Fail closed: the prohibit routes stay when the node stops (cleanly or not) and
            // when its start fails; `gateway down` removes them.
            _configurator.SyncStrictRoutes();
            _overlay.ServicesChanged += SyncServiceRoutes;
            _overlay.WatchFiles();
            _overlay.StartConntrackCollector(clock);
            _ipsec?.StartPolling();
        }

        if (_overlay is not null && _ipsec is null)
        {
            // Pods' bandwidth limits: the pacer sends held packets; pacing needs a high-resolution clock.
            // (Not with IPsec: the pacer seals with WireGuard.)
            var pacer = new Bandwidth.EgressPacer(_overlay.EnableBandwidth(_options.Clock ?? TimeProvider.System), _overlay, _engine, bind, Mtu, _options.BatchSize,
                message => { _log.Error(message); _stop.Cancel(); });
            pacer.Start();
            _undo.Add(pacer.Dispose);
        }

        IEgressStage egress = _overlay is null ? new PlainEgress(_engine) : _ipsec is not null ? new EspEgress(_overlay, _ipsec) : new OverlayEgress(_overlay);
        IIngressStage ingress = _overlay is null ? new PlainIngress(_engine) : _ipsec is not null ? new EspIngress(_overlay, _ipsec) : new OverlayIngress(_overlay);
        var send = new SendPath(tun, bind, _engine, egress, metrics, _options.BatchSize, Mtu);
        var handshakes = new HandshakeQueue(_engine, timers);
        metrics.Handshakes = handshakes;
        metrics.Timers = timers;
        var receive = new ReceivePath(tun, bind, _engine, ingress, metrics, _options.BatchSize) { Handshakes = handshakes };
        _send = send;
        _receive = receive;
        int workers = _options.CryptoWorkers ?? Environment.ProcessorCount;
        var crypto = new CryptoPool(workers, message =>
        {
            _log.Error(message);
            _stop.Cancel();
        });
        _undo.Add(crypto.Dispose);
        int ring = crypto.Inline ? 1 : _options.QueueBatches;
        send.Attach(crypto, ring);
        receive.Attach(crypto, ring);
        crypto.Start("gw-crypto");

        var engine = _engine;
        StartThread("tun-rx", () => send.Run(_stop.Token));
        StartThread("udp-rx", () => receive.Run(_stop.Token));
        StartThread("handshakes", () => handshakes.Run(_stop.Token));
        if (_options.TimerThread)
        {
            StartThread("timers", () => HandshakeTimers.Run(engine, _log, _stop.Token));
        }
        routes?.GetAwaiter().GetResult(); // a route that failed fails the start, as before
        // The UAPI socket is what `wg` and scripts wait for: it appears only once the routes and
        // strict mode's prohibit routes are in, and before PostUp (whose commands may call `wg set`).
        if (_options.UapiHandler is { } handler)
        {
            _uapi = UapiSocketServer.Start(tun.Name, request => _configurator.HandleUapi(handler, request), _options.UapiDirectory);
            _undo.Add(() => _uapi.DisposeAsync().AsTask().GetAwaiter().GetResult());
        }
        NodeConfigurator.RunHooks(iface.PostUp, "PostUp", _options.InterfaceName, _log);
        _log.Info($"{tun.Name} up: listening on " + (_ipsec is null ? $"UDP {bind.LocalPort}" : $"ESP (IPsec, node {_ipsec.LocalAddress}, boot id {_ipsec.BootId})") + $", MTU {Mtu}, {_engine.PeerCount} peer(s), " +
                  (crypto.Inline ? "crypto on the I/O threads" : $"{crypto.Workers} crypto worker(s)") +
                  (tun.OffloadsEnabled ? ", TUN offloads on" : ", TUN offloads off") +
                  (_uapi is null ? "" : $", UAPI {_uapi.SocketPath}") +
                  (_metrics is null ? "" : $", metrics {_metrics}"));
    }

    /// <summary>Routes follow the service VIPs after a services reload.</summary>
    private void SyncServiceRoutes()
    {
        try
        {
            _configurator?.SyncRoutes();
        }
        catch (LinkException e)
        {
            _log.Warn($"route update after a services reload failed: {e.Message}");
        }
    }

    /// <summary>Bytes allocated so far by the two reader threads (with inline crypto: the whole data path).</summary>
    internal long DataPathAllocatedBytes => (_send?.AllocatedBytes ?? 0) + (_receive?.AllocatedBytes ?? 0);

    /// <summary>The node's instruments (System.Diagnostics.Metrics meters <c>Gateway.*</c>): what the
    /// metrics endpoint serves and dotnet-counters shows. Parts that run beside the node (the cluster
    /// agent) add theirs here.</summary>
    public GatewayMeters Meters => _meters ?? throw new InvalidOperationException("not started");

    /// <summary>The node's series as lines <c>name{labels} value</c>, read now (also without the endpoint).</summary>
    public string RenderMetrics() => Meters.ReadAsText();

    private static int DefaultMtu()
    {
        int? underlay = IpCommand.UnderlayMtu();
        return underlay is int mtu && mtu - WireGuardOverhead >= 1280 ? mtu - WireGuardOverhead : 1420;
    }

    private void StartThread(string name, Action loop)
    {
        var thread = new Thread(() =>
        {
            try
            {
                loop();
            }
            catch (Exception e) when (Volatile.Read(ref _disposed) == 0)
            {
                _log.Error($"{name} stopped: {e.Message}");
                _stop.Cancel();
            }
        })
        { IsBackground = true, Name = $"gw-{name}" };
        _threads.Add(thread);
        thread.Start();
    }

    /// <summary>
    /// Applies a new configuration file without dropping established sessions: peers that stay
    /// keep their keypairs, removed peers are dropped, routes follow the allowed IPs.
    /// The interface's addresses, MTU and listen port are fixed for the life of the node.
    /// </summary>
    public void Reload(WgQuickConfig next)
    {
        ArgumentNullException.ThrowIfNull(next);
        (_configurator ?? throw new InvalidOperationException("not started")).Reload(next);
        _ipsec?.ApplyPeers(next);
    }

    /// <summary>Cluster mode: adds, updates and removes peers as deltas (see
    /// <see cref="NodeConfigurator.ApplyPeerChanges"/>); a cluster of thousands of nodes is not re-read whole per change.</summary>
    public void ApplyPeerChanges(IReadOnlyList<PeerSection> upserts, IReadOnlyCollection<PublicKey> removed)
    {
        var configurator = _configurator ?? throw new InvalidOperationException("not started");
        configurator.ApplyPeerChanges(upserts, removed);
        _ipsec?.ApplyPeers(configurator.Config);
    }

    /// <summary>
    /// Reloads the configuration file at <paramref name="path"/> (what SIGHUP does) and never
    /// throws: an unreadable or invalid file, a route the kernel refuses or an unexpected failure
    /// of any stage leaves the previous configuration in force (peers, sessions, routes) and is
    /// logged as one line. True when the new file is in force.
    /// </summary>
    public bool ReloadFile(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        WgQuickConfig? next = null;
        try
        {
            next = WgQuickConfig.Load(path);
            foreach (var warning in next.Warnings)
            {
                _log.Warn(warning);
            }
            Reload(next);
            return true;
        }
        catch (Exception e)
        {
            if (next is not null && !ReferenceEquals(_configurator?.Config, next))
            {
                next.Dispose(); // not applied: its keys are zeroed now
            }
            _log.Error($"reload failed, previous configuration stays in force: {DescribeFailure(e)}");
            return false;
        }
    }

    /// <summary>The message of an expected failure (bad file, refused route); the type as well for
    /// anything else, so that an unexpected one is recognisable in the log.</summary>
    public static string DescribeFailure(Exception e) =>
        e is ConfigException or LinkException or IOException or UnauthorizedAccessException or InvalidDataException
            ? e.Message
            : $"{e.GetType().Name}: {e.Message}";

    private void Undo()
    {
        for (int i = _undo.Count - 1; i >= 0; i--)
        {
            try
            {
                _undo[i]();
            }
            catch (Exception e)
            {
                _log.Warn($"cleanup step failed: {e.Message}");
            }
        }
        _undo.Clear();
    }

    /// <summary>Stops the threads, runs PreDown, removes the interface, runs PostDown.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        var iface = Config.Interface;
        try
        {
            NodeConfigurator.RunHooks(iface.PreDown, "PreDown", _options.InterfaceName, _log);
        }
        catch (Exception e)
        {
            _log.Warn(e.Message);
        }
        _stop.Cancel();
        Undo(); // closes TUN and socket, which wakes the data-path threads
        foreach (var thread in _threads)
        {
            thread.Join(TimeSpan.FromSeconds(5));
        }
        try
        {
            NodeConfigurator.RunHooks(iface.PostDown, "PostDown", _options.InterfaceName, _log);
        }
        catch (Exception e)
        {
            _log.Warn(e.Message);
        }
        _configurator?.DisposeReloaded();
        _log.Info($"{_options.InterfaceName} down");
        await Task.CompletedTask.ConfigureAwait(false);
        _stop.Dispose();
    }
}
