using System.Net;
using System.Net.Sockets;
using Gateway.Datapath;
using Gateway.Node.Configuration;
using Gateway.Node.Daemon;
using Gateway.Node.Metrics;
using Gateway.Tunnel;
using Gateway.Tunnel.Esp;

namespace Gateway.Node.Ipsec;

/// <summary>
/// IPsec mode of an overlay node ([Overlay] Encryption = ipsec): the ESP tunnel between this
/// node's underlay address and its peers' (<see cref="EspTunnel"/>), keyed from Cilium's keys file
/// through the per node-pair derivation, the keys file polled for rotation, and the metrics
/// Cilium exports for its xfrm states. The overlay pipeline (policy, VXLAN, flow log, strict mode)
/// is the same as in WireGuard mode; <see cref="EspEgress"/> and <see cref="EspIngress"/> plug ESP
/// in where WireGuard seals and opens.
/// </summary>
/// <remarks>
/// Peers are the configuration's [Peer] sections: the Endpoint's address is the node's underlay
/// address (ESP has no port), PublicKey names the node (as in the overlay's routing), and
/// IPsecBootId is the boot id that node printed at start. This node's boot id is a fresh random
/// UUID per run (<see cref="BootId"/>), because the SA state, sequence counters included, lives in
/// this process: a restart derives new keys instead of reusing a key with a restarted counter.
/// </remarks>
public sealed class IpsecOverlay : IDisposable
{
    /// <summary>How often the keys file is read again (issue 16: a new key within 60 s).</summary>
    public static readonly TimeSpan DefaultPollInterval = TimeSpan.FromSeconds(10);

    private readonly string _keyFilePath;
    private readonly IpsecKeyManager _keys;
    private readonly NodeLog _log;
    private readonly Lock _lock = new();
    private Timer? _poll;
    private string? _lastText;
    private Peers _peers = new([], []);
    private long _keyLoadFailures;
    private bool _disposed;

    private sealed record Peers(Dictionary<PublicKey, IpAddress> NodeByKey, Dictionary<IpAddress, PublicKey> KeyByNode);

    private IpsecOverlay(string keyFilePath, IpsecKeyManager keys, EspTunnel tunnel, string bootId, NodeLog log)
    {
        _keyFilePath = keyFilePath;
        _keys = keys;
        Tunnel = tunnel;
        BootId = bootId;
        _log = log;
    }

    /// <summary>The ESP tunnel the data path seals and opens with.</summary>
    public EspTunnel Tunnel { get; }

    /// <summary>This node's boot id for this run (peers put it in their [Peer] IPsecBootId).</summary>
    public string BootId { get; }

    /// <summary>This node's underlay address, one input of the key derivation.</summary>
    public IpAddress LocalAddress => Tunnel.LocalAddress;

    /// <summary>Keys file reads that were refused (the keys in use stayed).</summary>
    public long KeyLoadFailures => Interlocked.Read(ref _keyLoadFailures);

    /// <summary>
    /// Loads the keys file (an error here is a <see cref="ConfigException"/>: the node does not start
    /// without its keys) and the peers of <paramref name="config"/>. <paramref name="localAddress"/>
    /// null: the address the kernel sends from towards the first peer.
    /// </summary>
    public static IpsecOverlay Create(WgQuickConfig config, IpAddress? localAddress, NodeLog log, TimeProvider clock, string? bootId = null)
    {
        var settings = config.Overlay ?? throw new ArgumentException("The configuration has no [Overlay] section.", nameof(config));
        string path = settings.IpsecKeyFilePath ?? throw new ConfigException(config.Path, settings.Line, "Encryption = ipsec needs IPsecKeyFile");
        IpAddress local = localAddress ?? DiscoverLocalAddress(config);
        if (!local.IsV4)
        {
            throw new ConfigException(config.Path, settings.Line, $"IPsec mode needs an IPv4 underlay; this node's address towards its peers is {local}");
        }
        var keys = new IpsecKeyManager(clock, settings.IpsecKeyRotationDuration);
        string text;
        try
        {
            text = File.ReadAllText(path);
            keys.Load(text);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or IpsecKeyException)
        {
            throw new ConfigException(config.Path, settings.IpsecKeyLine > 0 ? settings.IpsecKeyLine : settings.Line, $"IPsecKeyFile {path}: {e.Message}");
        }
        string id = bootId ?? Guid.NewGuid().ToString();
        var tunnel = new EspTunnel(keys, local, id);
        var ipsec = new IpsecOverlay(path, keys, tunnel, id, log) { _lastText = text };
        ipsec.ApplyPeers(config);
        log.Info($"ipsec: node {local}, boot id {id}, {keys.Keys.Current}, {ipsec._peers.NodeByKey.Count} peer node(s)");
        return ipsec;
    }

    /// <summary>The address the kernel would send from to the first peer's underlay address.</summary>
    private static IpAddress DiscoverLocalAddress(WgQuickConfig config)
    {
        IpEndpoint first = config.Peers.FirstOrDefault(p => p.Endpoint is not null)?.Endpoint
            ?? throw new ConfigException(config.Path, config.Overlay!.Line, "IPsec mode needs [Peer] sections with an Endpoint (the peer node's underlay address)");
        try
        {
            using var probe = new Socket(first.Address.IsV4 ? AddressFamily.InterNetwork : AddressFamily.InterNetworkV6, SocketType.Dgram, ProtocolType.Udp);
            probe.Connect(new IPEndPoint(first.Address.ToIPAddress(), 9)); // no packet is sent
            return IpAddress.FromIPAddress(((IPEndPoint)probe.LocalEndPoint!).Address);
        }
        catch (SocketException e)
        {
            throw new ConfigException(config.Path, config.Overlay!.Line, $"IPsec mode: no route to the peer node {first.Address}: {e.Message}");
        }
    }

    /// <summary>Points the tunnel at the peers of <paramref name="config"/> (start and reload). A peer
    /// without an Endpoint or IPsecBootId gets no SA (warned): its packets count as no_state.</summary>
    public void ApplyPeers(WgQuickConfig config)
    {
        lock (_lock)
        {
            var byKey = new Dictionary<PublicKey, IpAddress>();
            var byNode = new Dictionary<IpAddress, PublicKey>();
            var bootIds = new Dictionary<IpAddress, string>();
            foreach (var section in config.Peers)
            {
                var key = new PublicKey(section.PublicKey.Bytes);
                if (section.Endpoint is not { } endpoint || section.Overlay.IpsecBootId is not { } peerBootId)
                {
                    _log.Warn($"ipsec: [Peer] of line {section.Line} has no Endpoint or no IPsecBootId; no ESP to or from it");
                    continue;
                }
                byKey[key] = endpoint.Address;
                byNode[endpoint.Address] = key;
                bootIds[endpoint.Address] = peerBootId;
            }
            // One rebuild for all peers (a cluster applies hundreds at once); unchanged ones keep their SAs.
            Tunnel.ReplacePeers(bootIds);
            Volatile.Write(ref _peers, new Peers(byKey, byNode));
        }
    }

    /// <summary>The underlay address of the node named by <paramref name="key"/>.</summary>
    public bool TryGetNode(PublicKey key, out IpAddress node) => Volatile.Read(ref _peers).NodeByKey.TryGetValue(key, out node);

    /// <summary>The node (its key) whose underlay address is <paramref name="node"/>.</summary>
    public bool TryGetSender(IpAddress node, out PublicKey key) => Volatile.Read(ref _peers).KeyByNode.TryGetValue(node, out key);

    /// <summary>Reads the keys file again every <paramref name="interval"/> (default 10 s) and drops
    /// retired keys whose overlap has passed.</summary>
    public void StartPolling(TimeSpan? interval = null)
    {
        var every = interval ?? DefaultPollInterval;
        lock (_lock)
        {
            _poll ??= new Timer(_ => Poll(), null, every, every);
        }
    }

    /// <summary>One poll: a changed file is loaded (a refused one is logged and the keys in use stay),
    /// expired keys are removed, and the tunnel takes the result.</summary>
    public void Poll()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }
            try
            {
                string text = File.ReadAllText(_keyFilePath);
                if (text != _lastText)
                {
                    var outcome = _keys.Load(text);
                    _lastText = text;
                    if (outcome == IpsecKeyLoadOutcome.Rotated)
                    {
                        _log.Info($"ipsec: keys file changed: now sending with {_keys.Keys.Current} (the previous key stays accepted for {_keys.RotationDuration})");
                    }
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or IpsecKeyException)
            {
                _lastText = null; // try again next time
                Interlocked.Increment(ref _keyLoadFailures);
                _log.Error($"ipsec: keys file {_keyFilePath} refused, the keys in use stay: {e.Message}");
            }
            int removed = _keys.RemoveExpired();
            if (removed > 0)
            {
                _log.Info($"ipsec: {removed} retired key(s) removed after the rotation overlap");
            }
            Tunnel.Refresh();
        }
    }

    /// <summary>Cilium-style IPsec metrics (meter Gateway.Ipsec): keys in use, the key id sent with,
    /// packets, and drops by type (names after the kernel's xfrm_stat counters Cilium exports).</summary>
    public void AddMetrics(GatewayMeters meters)
    {
        const string area = "Ipsec";
        meters.Gauge(area, "gateway_ipsec_keys", "IPsec keys in use (the current one and those still accepted during a rotation).",
            () => [meters.Sample((double)Tunnel.KeyCount)]);
        meters.Gauge(area, "gateway_ipsec_key_id", "The IPsec key id (SPI) packets are sent with.",
            () => [meters.Sample((double)Tunnel.CurrentSpi)]);
        // The boot id in a machine-readable place: in file mode each peer needs it in its
        // [Peer] IPsecBootId after every start of this node.
        meters.Gauge(area, "gateway_ipsec_boot_id_info", "1, labelled with this run's IPsec boot id (peers derive the node-pair keys from it; file mode: their [Peer] IPsecBootId).",
            () => [meters.Sample(1.0, ("boot_id", BootId))]);
        meters.Counter(area, "gateway_ipsec_packets_total", "ESP packets sealed (tx) and opened (rx).",
            () =>
            [
                meters.Sample(Tunnel.GetSendCount(EspStatus.Ok), ("direction", "tx")),
                meters.Sample(Tunnel.GetReceiveCount(EspStatus.Ok), ("direction", "rx")),
            ]);
        meters.Counter(area, "gateway_ipsec_errors_total", "ESP packets dropped, by type (no_state, replay, auth_failure, short, bad_padding, not_tunnel; no_outbound_state, seq_exhausted, buffer_too_small on send).",
            () =>
            {
                var samples = new List<System.Diagnostics.Metrics.Measurement<long>>();
                for (var status = EspStatus.Ok + 1; status < EspStatus.Count; status++)
                {
                    samples.Add(meters.Sample(Tunnel.GetReceiveCount(status) + Tunnel.GetSendCount(status), ("type", EspTunnel.ErrorType(status))));
                }
                return samples;
            });
        meters.Counter(area, "gateway_ipsec_key_load_failures_total", "Reads of the IPsec keys file that were refused (the keys in use stayed).",
            () => [meters.Sample(KeyLoadFailures)]);
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            _poll?.Dispose();
        }
        Tunnel.Dispose();
    }
}
