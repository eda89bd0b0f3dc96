using System.Diagnostics;
using System.Net;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Gateway.Datapath;
using Gateway.Datapath.Devices;
using Gateway.Datapath.Offload;
using Gateway.Node.Configuration;
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
    /// <summary>Where to serve Prometheus metrics; null disables the endpoint.</summary>
    public IPEndPoint? MetricsEndpoint { get; init; } = new(IPAddress.Loopback, MetricsServer.DefaultPort);
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
}

/// <summary>
/// A complete userspace WireGuard interface: a TUN device and a UDP socket joined by the
/// protocol engine. Two data-path threads (TUN to network, network to TUN) move batches of
/// packets; a third ticks the engine's timers. The interface is configured from a wg-quick
/// file and afterwards through the UAPI socket, so the stock `wg` tool works against it.
/// </summary>
public sealed class WireGuardNode : IAsyncDisposable
{
    /// <summary>WireGuard's per-packet overhead on IPv6 underlays (40 IP + 8 UDP + 32 WG).</summary>
    public const int WireGuardOverhead = 80;
    private const int Headroom = 16;            // transport header, prepended in place
    private const int ReceiveSlotSize = 65536;  // any datagram a peer may send

    private readonly WireGuardNodeOptions _options;
    private readonly NodeLog _log;
    private readonly List<Action> _undo = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Thread> _threads = [];
    private WireGuardEngine? _engine;
    private TunDevice? _tun;
    private UdpBatchSocket? _socket;
    private UapiSocketServer? _uapi;
    private MetricsServer? _metrics;
    private OverlayRuntime? _overlay;
    private readonly List<IpPrefix> _prohibitRoutes = [];
    private WgQuickConfig _config;
    private readonly HashSet<IpPrefix> _routes = [];
    private readonly Lock _reloadLock = new();
    private CryptoPool? _crypto;
    private OrderedStage<OutboundBatch>? _outbound;
    private OrderedStage<InboundBatch>? _inbound;
    private InboundBatch? _overflow;
    private TcpCoalescer? _coalescer;
    private long _tunWriteFailures;
    private long _receiveQueueFull;
    private long _tunOffloadInvalid;
    private long _superPacketsRead;    // TCP super-packets read from TUN and cut into segments
    private long _superPacketsWritten; // runs of segments written to TUN as one super-packet
    private long _oversizedDatagrams;
    private int _disposed;

    private WireGuardNode(WireGuardNodeOptions options)
    {
        _options = options;
        _log = options.Log;
        _config = options.Config;
    }

    public string InterfaceName => _tun?.Name ?? _options.InterfaceName;

    public WireGuardEngine Engine => _engine ?? throw new InvalidOperationException("not started");

    public int Mtu { get; private set; }

    public ushort ListenPort => _socket?.LocalPort ?? 0;

    /// <summary>The overlay control plane, when the configuration has an [Overlay] section.</summary>
    public OverlayRuntime? Overlay => _overlay;

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
        var iface = _config.Interface;
        RunHooks(iface.PreUp, "PreUp");

        _tun = TunDevice.Create(_options.InterfaceName, vnetHeader: _options.TunOffloads);
        _undo.Add(() => _tun.Dispose());
        if (_tun.HasVnetHeader && !_tun.TryEnableOffloads())
        {
            _log.Warn($"{_tun.Name}: the kernel refused TUN offloads; one packet per read");
        }

        bool overlay = _config.Overlay is not null;
        // In overlay mode the TUN carries workload packets; each gains 50 bytes of VXLAN
        // framing before WireGuard sees it (Cilium's 80 + 50 on a 1500-byte link: 1370).
        Mtu = iface.Mtu ?? DefaultMtu() - (overlay ? VxlanFrame.Overhead : 0);
        // The data path reads the clock once per packet: the coarse monotonic clock costs a
        // fifth of the high-resolution one and WireGuard's timers need only milliseconds.
        _engine = new WireGuardEngine(new SocketOutput(this), new WireGuardEngineOptions
        {
            Mtu = Mtu + (overlay ? VxlanFrame.Overhead : 0),
            Clock = CoarseTimeProvider.Instance,
        });
        _undo.Add(() => _engine.Dispose());
        if (overlay)
        {
            _overlay = OverlayRuntime.Create(_config, _engine, _options.InterfaceName, _log, CoarseTimeProvider.Instance);
            _undo.Add(() => _overlay.Dispose());
        }

        _socket = new UdpBatchSocket(iface.ListenPort ?? 0, bindAddress: null, batchSize: _options.BatchSize);
        _undo.Add(() => _socket.Dispose());
        _engine.ListenPort = _socket.LocalPort;
        ApplyConfig(_config, previous: null);

        foreach (var address in iface.Addresses)
        {
            IpCommand.AddAddress(_tun.Name, address);
        }
        IpCommand.SetMtu(_tun.Name, Mtu);
        IpCommand.SetUp(_tun.Name);
        SyncRoutes();

        if (_options.UapiHandler is { } handler)
        {
            _uapi = UapiSocketServer.Start(_tun.Name, request => HandleUapi(handler, request), _options.UapiDirectory);
            _undo.Add(() => _uapi.DisposeAsync().AsTask().GetAwaiter().GetResult());
        }
        if (_options.MetricsEndpoint is { } metricsEndpoint)
        {
            _metrics = MetricsServer.Start(metricsEndpoint, RenderMetrics);
            _undo.Add(() => _metrics.DisposeAsync().AsTask().GetAwaiter().GetResult());
        }

        if (_overlay is not null)
        {
            InstallStrictRoutes();
            _overlay.WatchFiles();
        }
        CreatePipelines();
        StartThread("tun-rx", TunReaderLoop);
        StartThread("udp-rx", UdpReaderLoop);
        StartThread("timers", TimerLoop);
        RunHooks(iface.PostUp, "PostUp");
        _log.Info($"{_tun.Name} up: listening on UDP {_socket.LocalPort}, MTU {Mtu}, {_engine.PeerCount} peer(s), " +
                  (_crypto!.Inline ? "crypto on the I/O threads" : $"{_crypto.Workers} crypto worker(s)") +
                  (_tun.OffloadsEnabled ? ", TUN offloads on" : ", TUN offloads off") +
                  (_uapi is null ? "" : $", UAPI {_uapi.SocketPath}") +
                  (_metrics is null ? "" : $", metrics http://{_metrics.LocalEndpoint}/metrics"));
    }

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

    /// <summary>Cancelled when the node stops on its own (a data-path thread failed).</summary>
    public CancellationToken Failed => _stop.Token;

    // ------------------------------------------------------------------ configuration

    /// <summary>
    /// Applies a new configuration file without dropping established sessions: peers that stay
    /// keep their keypairs, removed peers are dropped, routes follow the allowed IPs.
    /// The interface's addresses, MTU and listen port are fixed for the life of the node.
    /// </summary>
    public void Reload(WgQuickConfig next)
    {
        ArgumentNullException.ThrowIfNull(next);
        lock (_reloadLock)
        {
            var previous = _config;
            try
            {
                ApplyConfig(next, previous);
                _config = next;
                _overlay?.ApplyPeers(next);
                SyncRoutes();
            }
            catch (LinkException)
            {
                // A route the new file needs could not be set: put the previous configuration
                // back (peers, overlay peers, routes) so that nothing stays half-applied, and let
                // the caller report the failure.
                _config = previous;
                try
                {
                    ApplyConfig(previous, next);
                    _overlay?.ApplyPeers(previous);
                    SyncRoutes();
                }
                catch (LinkException rollback)
                {
                    _log.Error($"{InterfaceName}: restoring the previous routes failed as well: {rollback.Message}");
                }
                throw;
            }
            _overlay?.ReloadPolicy();
            if (!ReferenceEquals(previous, _options.Config))
            {
                previous.Dispose();
            }
            _log.Info($"{InterfaceName} reloaded from {next.Path}: {Engine.PeerCount} peer(s)");
        }
    }

    private void ApplyConfig(WgQuickConfig config, WgQuickConfig? previous)
    {
        var engine = Engine;
        var key = config.Interface.PrivateKey!;
        Span<byte> current = stackalloc byte[32];
        bool samePrivate = engine.TryCopyPrivateKey(current) && System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(current, key.Bytes);
        System.Security.Cryptography.CryptographicOperations.ZeroMemory(current);
        if (!samePrivate)
        {
            engine.SetPrivateKey(key.Bytes);
        }
        var wanted = new HashSet<PublicKey>();
        Span<byte> psk = stackalloc byte[32];
        foreach (var section in config.Peers)
        {
            var publicKey = new PublicKey(section.PublicKey.Bytes);
            wanted.Add(publicKey);
            var peer = engine.GetOrAddPeer(publicKey);
            psk.Clear();
            if (section.PresharedKey is { } presharedKey)
            {
                presharedKey.Bytes.CopyTo(psk);
            }
            engine.SetPresharedKey(peer, psk);
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(psk);
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

    /// <summary>Routes every peer's allowed IPs to the interface (wg-quick's Table=auto), except
    /// default routes, which would capture the tunnel's own underlay traffic.</summary>
    private void SyncRoutes()
    {
        string? table = _config.Interface.Table;
        if (table == "off" || _tun is null)
        {
            return;
        }
        var wanted = new HashSet<IpPrefix>();
        foreach (var peer in Engine.Peers)
        {
            var routed = peer.AllowedIps.ToList();
            if (_overlay is not null)
            {
                var overlayPeer = _overlay.Pipeline.Peers.FirstOrDefault(p => p.PublicKey == peer.PublicKey);
                if (overlayPeer is not null)
                {
                    routed.AddRange(overlayPeer.PodCidrs);
                }
            }
            foreach (var prefix in routed)
            {
                if (prefix.Length == 0)
                {
                    _log.Warn($"{InterfaceName}: not routing {prefix} (a default route through the tunnel needs policy routing; set Table = off and add rules yourself)");
                    continue;
                }
                wanted.Add(prefix);
            }
        }
        foreach (var prefix in _routes.Except(wanted).ToList())
        {
            IpCommand.DeleteRoute(_tun.Name, prefix, table);
            _routes.Remove(prefix);
        }
        foreach (var prefix in wanted.Except(_routes).ToList())
        {
            IpCommand.AddRoute(_tun.Name, prefix, table);
            _routes.Add(prefix);
        }
    }

    /// <summary>
    /// Strict mode: cluster prefixes get a 'prohibit' route with a high metric, so that if the
    /// tunnel's routes are missing (gateway stopped, crashed, or a route deleted) cluster traffic
    /// is refused by the kernel instead of leaving in plaintext by the default route.
    /// </summary>
    private void InstallStrictRoutes()
    {
        var settings = _config.Overlay!;
        if (!settings.Strict)
        {
            return;
        }
        foreach (var prefix in settings.ClusterCidrs)
        {
            IpCommand.Run($"{(prefix.Address.IsV6 ? "-6" : "-4")} route replace prohibit {prefix} metric {StrictRouteMetric}");
            _prohibitRoutes.Add(prefix);
        }
        _undo.Add(() =>
        {
            foreach (var prefix in _prohibitRoutes)
            {
                IpCommand.Run($"{(prefix.Address.IsV6 ? "-6" : "-4")} route del prohibit {prefix} metric {StrictRouteMetric}", check: false);
            }
        });
    }

    /// <summary>Metric of strict mode's fallback routes: worse than any route that carries traffic.</summary>
    public const int StrictRouteMetric = 4242;

    private string HandleUapi(Func<WireGuardEngine, string, string> handler, string request)
    {
        lock (_reloadLock)
        {
            string response = handler(Engine, request);
            if (request.StartsWith("set=1", StringComparison.Ordinal))
            {
                try
                {
                    SyncRoutes();
                }
                catch (LinkException e)
                {
                    _log.Warn($"{InterfaceName}: route update after UAPI set failed: {e.Message}");
                }
            }
            return response;
        }
    }

    private void RunHooks(List<string> commands, string stage)
    {
        foreach (var command in commands)
        {
            string expanded = command.Replace("%i", _options.InterfaceName, StringComparison.Ordinal);
            _log.Info($"{stage}: {expanded}");
            using var process = Process.Start(new ProcessStartInfo("/bin/bash", ["-c", expanded]) { UseShellExecute = false })
                ?? throw new LinkException($"{stage} hook could not start");
            process.WaitForExit();
            if (process.ExitCode != 0)
            {
                throw new LinkException($"{stage} hook '{expanded}' failed with exit code {process.ExitCode}");
            }
        }
    }

    // ------------------------------------------------------------------ data path

    private sealed class SocketOutput(WireGuardNode node) : ITunnelOutput
    {
        public void SendDatagram(in IpEndpoint destination, ReadOnlySpan<byte> datagram) =>
            node._socket?.Send(datagram, destination);
    }

    /// <summary>A batch of packets read from TUN: sealed in place, then sent with one sendmmsg.</summary>
    private sealed unsafe class OutboundBatch
    {
        public readonly int SlotSize;
        public readonly byte[] Slab;   // pinned: its address is handed to sendmmsg
        public readonly byte* Base;
        public int Count;              // packets read into the batch
        public readonly int[] Offsets; // the datagram's place in its slot; Lengths[i] == 0: nothing to send
        public readonly int[] Lengths;
        public readonly IpEndpoint[] Destinations;
        public readonly SealTicket[] Tickets;
        public int SendCount;
        public readonly nint[] SendPointers;
        public readonly int[] SendLengths;
        public readonly IpEndpoint[] SendDestinations;

        public OutboundBatch(int capacity, int slotSize)
        {
            SlotSize = slotSize;
            Slab = GC.AllocateUninitializedArray<byte>(slotSize * capacity, pinned: true);
            Base = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(Slab));
            Offsets = new int[capacity];
            Lengths = new int[capacity];
            Destinations = new IpEndpoint[capacity];
            Tickets = new SealTicket[capacity];
            SendPointers = new nint[capacity];
            SendLengths = new int[capacity];
            SendDestinations = new IpEndpoint[capacity];
        }

        public Span<byte> Slot(int i) => Slab.AsSpan(i * SlotSize, SlotSize);
    }

    /// <summary>A batch of datagrams from one recvmmsg: opened in place, then handled in order.</summary>
    private sealed unsafe class InboundBatch
    {
        public readonly byte[] Slab;   // pinned; ReceiveSlotSize per datagram, touched only as far as used
        public readonly nint[] Pointers;
        public int Count;
        public readonly int[] Lengths;
        public readonly IpEndpoint[] Sources;
        public readonly OpenTicket[] Tickets;
        public readonly TunnelResult[] Results;     // plain mode: final results of the first half
        public readonly OverlayResult[] Outcomes;   // overlay mode: the same

        public InboundBatch(int capacity)
        {
            Slab = GC.AllocateUninitializedArray<byte>(ReceiveSlotSize * capacity, pinned: true);
            byte* basePointer = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(Slab));
            Pointers = new nint[capacity];
            for (int i = 0; i < capacity; i++)
            {
                Pointers[i] = (nint)(basePointer + i * ReceiveSlotSize);
            }
            Lengths = new int[capacity];
            Sources = new IpEndpoint[capacity];
            Tickets = new OpenTicket[capacity];
            Results = new TunnelResult[capacity];
            Outcomes = new OverlayResult[capacity];
        }

        public Span<byte> Slot(int i) => Slab.AsSpan(i * ReceiveSlotSize, ReceiveSlotSize);
    }

    private void WriteCoalesced(ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty)
        {
            return;
        }
        if (bytes[1] != (byte)GsoType.None)
        {
            _superPacketsWritten++;
        }
        if (!_tun!.Write(bytes))
        {
            Interlocked.Increment(ref _tunWriteFailures);
        }
    }

    private void CreatePipelines()
    {
        _coalescer = _tun!.OffloadsEnabled ? new TcpCoalescer() : null;
        int workers = _options.CryptoWorkers ?? Environment.ProcessorCount;
        _crypto = new CryptoPool(workers, message =>
        {
            _log.Error(message);
            _stop.Cancel();
        });
        _undo.Add(() => _crypto.Dispose());
        int batch = _options.BatchSize;
        int ring = _crypto.Inline ? 1 : _options.QueueBatches;
        int headroom = PacketHeadroom;
        // Room for the headers in front, and padding plus tag behind, of an MTU-sized packet.
        int slotSize = (headroom + Mtu + 16 + 16 + 63) & ~63;
        var outbound = new OutboundBatch[ring];
        var inbound = new InboundBatch[ring];
        for (int i = 0; i < ring; i++)
        {
            outbound[i] = new OutboundBatch(batch, slotSize);
            inbound[i] = new InboundBatch(batch);
        }
        _overflow = new InboundBatch(batch);
        _outbound = _crypto.AddStage(outbound, SealBatch, SendBatch);
        _inbound = _crypto.AddStage(inbound, OpenBatch, DeliverBatch);
        _crypto.Start("gw-crypto");
    }

    // TUN -> network, step 1 (reader thread, in order): read a batch, route each packet, give it
    // its session and counter.
    private void TunReaderLoop()
    {
        if (_tun!.HasVnetHeader)
        {
            TunReaderLoopWithOffloads();
            return;
        }
        var tun = _tun!;
        int headroom = PacketHeadroom;
        int batchSize = _options.BatchSize;
        while (!_stop.IsCancellationRequested)
        {
            var batch = _outbound!.TryAcquire(wait: true);
            if (batch is null)
            {
                return;
            }
            int n = tun.Read(batch.Slot(0)[headroom..]);
            if (n < 0)
            {
                return;
            }
            int count = 0;
            while (true)
            {
                BeginSeal(batch, count, n);
                count++;
                if (count == batchSize)
                {
                    break;
                }
                n = tun.TryRead(batch.Slot(count)[headroom..]);
                if (n <= 0)
                {
                    break;
                }
            }
            batch.Count = count;
            _outbound.Publish(batch);
        }
    }

    private int PacketHeadroom => _overlay is null ? Headroom : OverlayPipeline.Headroom;

    /// <summary>The in-order half for the packet in slot <paramref name="index"/> (at the headroom).</summary>
    private void BeginSeal(OutboundBatch batch, int index, int length)
    {
        var slot = batch.Slot(index);
        if (_overlay?.Pipeline is { } pipeline)
        {
            var result = pipeline.BeginOutbound(slot, OverlayPipeline.Headroom, length, out batch.Tickets[index]);
            batch.Offsets[index] = result.Offset;
            batch.Lengths[index] = result.Action == OverlayAction.Send ? result.Length : 0;
            batch.Destinations[index] = result.Endpoint;
        }
        else
        {
            var result = _engine!.BeginEncapsulateInPlace(slot, length, out batch.Tickets[index]);
            batch.Offsets[index] = 0;
            batch.Lengths[index] = result.Action == TunnelAction.SendToNetwork ? result.Length : 0;
            batch.Destinations[index] = result.Endpoint;
        }
    }

    /// <summary>
    /// The TUN reader with offloads: each read is a virtio_net_hdr and a packet, which may be a TCP
    /// super-packet of up to 64 KiB (cut here into MSS-sized segments, one slot each, as a NIC would)
    /// or carry a partial checksum (completed here). One read can thus fill most of a batch.
    /// </summary>
    private void TunReaderLoopWithOffloads()
    {
        var tun = _tun!;
        int headroom = PacketHeadroom;
        int batchSize = _options.BatchSize;
        var scratch = GC.AllocateUninitializedArray<byte>(VirtioNetHeader.Size + 65536, pinned: true);
        var batch = _outbound!.TryAcquire(wait: true);
        int count = 0;
        while (batch is not null && !_stop.IsCancellationRequested)
        {
            int capacity = batch.SlotSize - headroom - 2 * Messages.TagSize; // room for padding and tag
            int n = count == 0 ? tun.Read(scratch) : tun.TryRead(scratch);
            if (n < 0)
            {
                return;
            }
            if (n == 0)
            {
                HandOver(); // nothing more queued
                continue;
            }
            if (n <= VirtioNetHeader.Size)
            {
                Interlocked.Increment(ref _tunOffloadInvalid);
                continue;
            }
            var header = VirtioNetHeader.Read(scratch);
            var packet = scratch.AsSpan(VirtioNetHeader.Size, n - VirtioNetHeader.Size);
            if (header.Gso == GsoType.None)
            {
                if ((header.NeedsChecksum && !TcpSegmenter.TryCompleteChecksum(packet, header.ChecksumStart, header.ChecksumOffset)) ||
                    packet.Length > capacity)
                {
                    Interlocked.Increment(ref _tunOffloadInvalid);
                    continue;
                }
                packet.CopyTo(batch.Slot(count)[headroom..]);
                BeginSeal(batch, count, packet.Length);
                count++;
            }
            else
            {
                if (!TcpSegmenter.TryGetLayout(packet, header, out var layout) || layout.HeaderLength + layout.Mss > capacity)
                {
                    Interlocked.Increment(ref _tunOffloadInvalid);
                    continue;
                }
                _superPacketsRead++;
                for (int i = 0; i < layout.Count && batch is not null; i++)
                {
                    int length = TcpSegmenter.WriteSegment(packet, layout, i, batch.Slot(count)[headroom..]);
                    BeginSeal(batch, count, length);
                    count++;
                    if (count == batchSize && i + 1 < layout.Count)
                    {
                        HandOver();
                    }
                }
            }
            if (batch is not null && count == batchSize)
            {
                HandOver();
            }
        }

        // Publishes the batch filled so far and waits for the next free one (null once stopping).
        void HandOver()
        {
            batch.Count = count;
            _outbound!.Publish(batch);
            batch = _outbound.TryAcquire(wait: true);
            count = 0;
        }
    }

    // Step 2 (any worker): the AEAD.
    private unsafe void SealBatch(OutboundBatch batch)
    {
        var engine = _engine!;
        int sends = 0;
        for (int i = 0; i < batch.Count; i++)
        {
            ref var ticket = ref batch.Tickets[i];
            if (ticket.IsPending)
            {
                bool sealedOk = engine.CompleteEncapsulate(ticket, batch.Slot(i)[batch.Offsets[i]..]);
                ticket = default; // let go of the session
                if (!sealedOk)
                {
                    continue;
                }
            }
            if (batch.Lengths[i] == 0)
            {
                continue;
            }
            batch.SendPointers[sends] = (nint)(batch.Base + i * batch.SlotSize + batch.Offsets[i]);
            batch.SendLengths[sends] = batch.Lengths[i];
            batch.SendDestinations[sends] = batch.Destinations[i];
            sends++;
        }
        batch.SendCount = sends;
    }

    // Step 3 (in order): one sendmmsg.
    private void SendBatch(OutboundBatch batch)
    {
        if (batch.SendCount > 0)
        {
            _socket!.SendBatch(batch.SendPointers.AsSpan(0, batch.SendCount), batch.SendLengths.AsSpan(0, batch.SendCount),
                batch.SendDestinations.AsSpan(0, batch.SendCount));
        }
        _overlay?.FlowLog?.Notify();
    }

    // Network -> TUN, step 1 (reader thread): one recvmmsg. When every batch is still in flight
    // the workers are behind: the datagrams are read anyway (so the socket keeps draining) and
    // dropped, counted as ReceiveQueueFull.
    private void UdpReaderLoop()
    {
        var socket = _socket!;
        var overflow = _overflow!;
        while (!_stop.IsCancellationRequested)
        {
            var batch = _inbound!.TryAcquire(wait: false);
            var target = batch ?? overflow;
            int n = socket.ReceiveBatch(target.Pointers, ReceiveSlotSize, target.Lengths, target.Sources);
            if (n < 0)
            {
                return;
            }
            if (batch is null)
            {
                Interlocked.Add(ref _receiveQueueFull, n);
                continue;
            }
            batch.Count = n;
            _inbound.Publish(batch);
        }
    }

    // Step 2 (any worker): authenticate and decrypt; handshake messages are handled entirely here.
    private void OpenBatch(InboundBatch batch)
    {
        var engine = _engine!;
        var pipeline = _overlay?.Pipeline;
        for (int i = 0; i < batch.Count; i++)
        {
            int length = batch.Lengths[i];
            if (length < 0)
            {
                continue;
            }
            if (pipeline is null)
            {
                batch.Results[i] = engine.BeginDecapsulate(batch.Sources[i], batch.Slot(i)[..length], out batch.Tickets[i]);
            }
            else
            {
                batch.Outcomes[i] = pipeline.BeginInbound(batch.Sources[i], batch.Slot(i), length, out batch.Tickets[i]);
            }
        }
    }

    // Step 3 (in order): replay window, timers, source checks, policy, then TUN.
    private void DeliverBatch(InboundBatch batch)
    {
        var engine = _engine!;
        var pipeline = _overlay?.Pipeline;
        var tun = _tun!;
        var gro = _coalescer; // only this step uses it, and it runs for one batch at a time
        for (int i = 0; i < batch.Count; i++)
        {
            int length = batch.Lengths[i];
            if (length < 0)
            {
                Interlocked.Increment(ref _oversizedDatagrams);
                continue;
            }
            var slot = batch.Slot(i);
            ref var ticket = ref batch.Tickets[i];
            if (pipeline is null)
            {
                var result = ticket.IsPending ? engine.CompleteDecapsulate(ticket, batch.Sources[i], slot[..length]) : batch.Results[i];
                ticket = default;
                batch.Results[i] = default;
                Act(result.Action == TunnelAction.DeliverToTun, result.Action == TunnelAction.SendToNetwork, slot, result.Offset, result.Length, result.Endpoint);
            }
            else
            {
                var outcome = ticket.IsPending ? pipeline.CompleteInbound(ticket, batch.Sources[i], slot, length) : batch.Outcomes[i];
                ticket = default;
                batch.Outcomes[i] = default;
                Act(outcome.Action == OverlayAction.Deliver, outcome.Action == OverlayAction.Send, slot, outcome.Offset, outcome.Length, outcome.Endpoint);
            }
        }
        if (gro is not null)
        {
            WriteCoalesced(gro.Flush());
        }
        _overlay?.FlowLog?.Notify();

        void Act(bool deliver, bool send, Span<byte> slot, int offset, int length, in IpEndpoint endpoint)
        {
            if (deliver)
            {
                if (gro is not null)
                {
                    // Runs of one TCP flow's segments go to TUN as one super-packet (GRO).
                    var packet = slot.Slice(offset, length);
                    if (gro.TryAppend(packet))
                    {
                        return;
                    }
                    WriteCoalesced(gro.Flush());
                    if (gro.TryStart(packet))
                    {
                        return;
                    }
                }
                if (tun.HasVnetHeader)
                {
                    // A zero virtio_net_hdr (a plain, complete packet) in front, over bytes of the
                    // WireGuard header that are no longer needed (the packet is at least 16 in).
                    offset -= VirtioNetHeader.Size;
                    length += VirtioNetHeader.Size;
                    slot.Slice(offset, VirtioNetHeader.Size).Clear();
                }
                if (!tun.Write(slot.Slice(offset, length)))
                {
                    Interlocked.Increment(ref _tunWriteFailures);
                }
            }
            else if (send)
            {
                _socket!.Send(slot.Slice(offset, length), endpoint);
            }
        }
    }

    private void TimerLoop()
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(100));
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                if (!timer.WaitForNextTickAsync(_stop.Token).AsTask().GetAwaiter().GetResult())
                {
                    return;
                }
            }
            catch (OperationCanceledException)
            {
                return;
            }
            _engine!.Tick();
        }
    }

    // ------------------------------------------------------------------ metrics

    private string RenderMetrics()
    {
        var engine = Engine;
        var text = new PrometheusText();
        var now = DateTimeOffset.UtcNow;
        text.Describe("gateway_peer_rx_bytes_total", "counter", "Bytes received from the peer (WireGuard transport messages).");
        foreach (var peer in engine.Peers)
        {
            text.Sample("gateway_peer_rx_bytes_total", peer.RxBytes, ("interface", InterfaceName), ("peer", peer.PublicKey.ToBase64()));
        }
        text.Describe("gateway_peer_tx_bytes_total", "counter", "Bytes sent to the peer (WireGuard transport messages).");
        foreach (var peer in engine.Peers)
        {
            text.Sample("gateway_peer_tx_bytes_total", peer.TxBytes, ("interface", InterfaceName), ("peer", peer.PublicKey.ToBase64()));
        }
        text.Describe("gateway_peer_last_handshake_seconds", "gauge", "Seconds since the latest completed handshake with the peer (absent before the first).");
        foreach (var peer in engine.Peers)
        {
            if (peer.LastHandshake is { } last)
            {
                text.Sample("gateway_peer_last_handshake_seconds", Math.Max(0, (now - last).TotalSeconds), ("interface", InterfaceName), ("peer", peer.PublicKey.ToBase64()));
            }
        }
        text.Describe("gateway_handshakes_total", "counter", "Handshake messages processed, by message type.");
        text.Sample("gateway_handshakes_total", engine.GetCount(TunnelEvent.InitiationProcessed), ("interface", InterfaceName), ("type", "initiation"));
        text.Sample("gateway_handshakes_total", engine.GetCount(TunnelEvent.ResponseProcessed), ("interface", InterfaceName), ("type", "response"));
        text.Sample("gateway_handshakes_total", engine.GetCount(TunnelEvent.CookieReplyProcessed), ("interface", InterfaceName), ("type", "cookie_reply"));
        text.Describe("gateway_drop_count_total", "counter", "Packets and datagrams dropped, by reason.");
        for (var reason = TunnelEvent.NotIpPacket; reason < TunnelEvent.Count; reason++)
        {
            text.Sample("gateway_drop_count_total", engine.GetCount(reason), ("interface", InterfaceName), ("reason", reason.ToString()));
        }
        text.Sample("gateway_drop_count_total", Interlocked.Read(ref _tunWriteFailures), ("interface", InterfaceName), ("reason", "TunWriteFailed"));
        text.Sample("gateway_drop_count_total", Interlocked.Read(ref _oversizedDatagrams), ("interface", InterfaceName), ("reason", "OversizedDatagram"));
        text.Sample("gateway_drop_count_total", Interlocked.Read(ref _receiveQueueFull), ("interface", InterfaceName), ("reason", "ReceiveQueueFull"));
        text.Sample("gateway_drop_count_total", Interlocked.Read(ref _tunOffloadInvalid), ("interface", InterfaceName), ("reason", "TunOffloadInvalid"));
        text.Describe("gateway_tun_super_packets_total", "counter", "TCP super-packets moved through the TUN device with offloads: read and cut into segments, or merged from segments and written.");
        text.Sample("gateway_tun_super_packets_total", Volatile.Read(ref _superPacketsRead), ("interface", InterfaceName), ("direction", "read"));
        text.Sample("gateway_tun_super_packets_total", Volatile.Read(ref _superPacketsWritten), ("interface", InterfaceName), ("direction", "written"));
        text.Describe("gateway_forward_count_total", "counter", "Packets forwarded, by direction.");
        text.Sample("gateway_forward_count_total", engine.GetCount(TunnelEvent.TransportSent), ("interface", InterfaceName), ("direction", "egress"));
        text.Sample("gateway_forward_count_total", engine.GetCount(TunnelEvent.TransportDelivered), ("interface", InterfaceName), ("direction", "ingress"));
        if (_overlay is { } overlay)
        {
            RenderOverlayMetrics(text, overlay);
        }
        return text.ToString();
    }

    private void RenderOverlayMetrics(PrometheusText text, OverlayRuntime overlay)
    {
        var pipeline = overlay.Pipeline;
        // Cilium's metric names (cilium_ prefix dropped for gateway_): drops and forwards by
        // reason and direction, policy verdicts, conntrack entries, lost flow events.
        text.Describe("gateway_overlay_drop_count_total", "counter", "Workload packets dropped by the overlay, by Cilium drop reason and direction.");
        foreach (var direction in new[] { Gateway.Policy.Direction.Ingress, Gateway.Policy.Direction.Egress })
        {
            foreach (var reason in Enum.GetValues<OverlayDrop>())
            {
                if (reason == OverlayDrop.None)
                {
                    continue;
                }
                text.Sample("gateway_overlay_drop_count_total", pipeline.Drops(direction, reason),
                    ("interface", InterfaceName), ("reason", OverlayDropNames.Name(reason)), ("direction", direction.ToString().ToUpperInvariant()));
            }
        }
        text.Describe("gateway_overlay_forward_count_total", "counter", "Workload packets forwarded by the overlay, by direction.");
        text.Sample("gateway_overlay_forward_count_total", pipeline.Forwards(Gateway.Policy.Direction.Ingress), ("interface", InterfaceName), ("direction", "INGRESS"));
        text.Sample("gateway_overlay_forward_count_total", pipeline.Forwards(Gateway.Policy.Direction.Egress), ("interface", InterfaceName), ("direction", "EGRESS"));
        text.Describe("gateway_policy_verdict_total", "counter", "Policy verdicts on new flows, by direction and outcome.");
        foreach (var direction in new[] { Gateway.Policy.Direction.Ingress, Gateway.Policy.Direction.Egress })
        {
            string d = direction.ToString().ToUpperInvariant();
            text.Sample("gateway_policy_verdict_total", PolicyVerdicts(direction, allowed: true), ("interface", InterfaceName), ("direction", d), ("verdict", "allowed"));
            text.Sample("gateway_policy_verdict_total", PolicyVerdicts(direction, allowed: false), ("interface", InterfaceName), ("direction", d), ("verdict", "denied"));
        }
        text.Describe("gateway_conntrack_entries", "gauge", "Connection tracking entries in use.");
        text.Sample("gateway_conntrack_entries", overlay.Policy.Conntrack.Count, ("interface", InterfaceName));
        text.Describe("gateway_flow_events_lost_total", "counter", "Flow events lost because the flow log could not keep up.");
        text.Sample("gateway_flow_events_lost_total", overlay.Policy.Events.Lost, ("interface", InterfaceName));
        text.Describe("gateway_policy_loads_total", "counter", "Policy loads, by outcome.");
        text.Sample("gateway_policy_loads_total", overlay.PolicyLoads, ("interface", InterfaceName), ("outcome", "success"));
        text.Sample("gateway_policy_loads_total", overlay.PolicyLoadFailures, ("interface", InterfaceName), ("outcome", "failure"));
    }

    private long PolicyVerdicts(Gateway.Policy.Direction direction, bool allowed)
    {
        var pipeline = _overlay!.Pipeline;
        return allowed
            ? pipeline.PolicyAllowed(direction)
            : pipeline.Drops(direction, OverlayDrop.PolicyDenied) + pipeline.Drops(direction, OverlayDrop.PolicyDeny);
    }

    // ------------------------------------------------------------------ shutdown

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
        try
        {
            RunHooks(_config.Interface.PreDown, "PreDown");
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
            RunHooks(_config.Interface.PostDown, "PostDown");
        }
        catch (Exception e)
        {
            _log.Warn(e.Message);
        }
        if (!ReferenceEquals(_config, _options.Config))
        {
            _config.Dispose();
        }
        _log.Info($"{_options.InterfaceName} down");
        await Task.CompletedTask.ConfigureAwait(false);
        _stop.Dispose();
    }
}
