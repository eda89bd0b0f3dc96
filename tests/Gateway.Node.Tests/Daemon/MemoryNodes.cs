using System.Buffers.Binary;
using Gateway.Crypto;
using Gateway.Datapath;
using Gateway.Datapath.Devices;
using Gateway.Node.Configuration;
using Gateway.Node.Daemon;
using Gateway.Tunnel;

namespace Gateway.Node.Tests.Daemon;

/// <summary>A clock that moves only when told (monotonic nanoseconds and wall time together).</summary>
public sealed class StepClock : TimeProvider
{
    private readonly object _gate = new();
    private long _nanos = 1_000_000_000_000;
    private DateTimeOffset _utc = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    public override long TimestampFrequency => 1_000_000_000L;

    public override long GetTimestamp()
    {
        lock (_gate) return _nanos;
    }

    public override DateTimeOffset GetUtcNow()
    {
        lock (_gate) return _utc;
    }

    public void Advance(TimeSpan by)
    {
        lock (_gate)
        {
            _nanos += by.Ticks * 100;
            _utc += by;
        }
    }
}

/// <summary>
/// Two complete nodes (<see cref="WireGuardNode"/>) joined by a <see cref="MemoryNetwork"/>, each
/// with a <see cref="MemoryTunDevice"/>: the whole daemon, plain or overlay, without root. The
/// network's tap records every underlay datagram, so tests can audit what leaves the nodes.
/// </summary>
public sealed class MemoryNodes : IAsyncDisposable
{
    public static readonly IpEndpoint UnderlayA = new(IpAddress.Parse("192.0.2.1"), 51820);
    public static readonly IpEndpoint UnderlayB = new(IpAddress.Parse("192.0.2.2"), 51820);
    public const string AddressA = "10.0.0.1";
    public const string AddressB = "10.0.0.2";

    private readonly string _dir = Directory.CreateTempSubdirectory("gw-memnodes-").FullName;
    private readonly string? _services;
    private readonly Gateway.Node.Overlay.IHostInjector? _injector;
    private readonly string? _ipsecKeys;

    /// <summary>IPsec mode's boot ids of node A and B (fixed, so the tests can derive the keys).</summary>
    public const string BootIdA = "11111111-1111-4111-8111-111111111111", BootIdB = "22222222-2222-4222-8222-222222222222";

    /// <summary>IPsec mode's keys file (both nodes read it; rewrite it and call Poll to rotate).</summary>
    public string IpsecKeyFile => Path.Combine(_dir, "ipsec-keys");
    private readonly TextWriter _logA;

    /// <summary>The folder holding the nodes' configs and YAML files.</summary>
    public string Folder => _dir;
    private readonly List<WgQuickConfig> _configs = [];
    private readonly object _tapLock = new();

    public MemoryNetwork Network { get; } = new();
    public StepClock Clock { get; } = new();
    public MemoryTunDevice TunA { get; }
    public MemoryTunDevice TunB { get; }
    public WireGuardNode A { get; }
    public WireGuardNode B { get; }
    public WireGuardKey KeyA { get; } = WireGuardKey.GeneratePrivate();
    public WireGuardKey KeyB { get; } = WireGuardKey.GeneratePrivate();

    /// <summary>Underlay datagrams seen, in order: (source, destination, first byte = message type, length).</summary>
    public List<(IpEndpoint From, IpEndpoint To, byte Type, int Length)> Underlay { get; } = [];

    /// <summary>Drops underlay datagrams while it returns true.</summary>
    public Func<IpEndpoint, ReadOnlySpan<byte>, bool>? DropWhen { get; set; }

    /// <param name="overlay">Run both nodes in overlay mode with the replay fixtures' endpoints and policy.</param>
    /// <param name="offloads">Give both TUN devices a vnet header and TCP/UDP offloads.</param>
    /// <param name="workers">Crypto workers (0 = inline on the I/O threads).</param>
    /// <param name="services">Kubernetes Service YAML for both nodes' `Services =` (overlay only).</param>
    /// <param name="ipsecKeys">Cilium keys file text: run both overlay nodes in IPsec mode (ESP over
    /// memory binds at the underlay addresses, port 0).</param>
    /// <param name="logA">Where node A logs (default: nowhere).</param>
    /// <param name="injector">Where both nodes hand packets for their own pods (default: nowhere).</param>
    public MemoryNodes(bool overlay = false, bool offloads = false, int workers = 1, string? services = null, string? ipsecKeys = null, TextWriter? logA = null,
        Gateway.Node.Overlay.IHostInjector? injector = null)
    {
        _injector = injector;
        _services = services;
        _logA = logA ?? TextWriter.Null;
        _ipsecKeys = ipsecKeys;
        if (ipsecKeys is not null)
        {
            overlay = true;
            File.WriteAllText(IpsecKeyFile, ipsecKeys);
        }
        Network.Tap = (from, to, datagram) =>
        {
            lock (_tapLock)
            {
                Underlay.Add((from, to, datagram.IsEmpty ? (byte)0 : datagram[0], datagram.Length));
            }
            return DropWhen is not { } drop || !drop(from, datagram);
        };
        if (overlay)
        {
            File.Copy(Path.Combine(Replay.ReplayFixtureTests.FixtureDirectory, "endpoints.yaml"), Path.Combine(_dir, "endpoints.yaml"));
            File.Copy(Path.Combine(Replay.ReplayFixtureTests.FixtureDirectory, "policy.yaml"), Path.Combine(_dir, "policy.yaml"));
            if (services is not null)
            {
                File.WriteAllText(Path.Combine(_dir, "services.yaml"), services);
            }
        }
        TunA = new MemoryTunDevice("mema", offloads: offloads, udpOffloads: offloads);
        TunB = new MemoryTunDevice("memb", offloads: offloads, udpOffloads: offloads);
        A = Start("a", KeyA, KeyB, AddressA, AddressB, UnderlayA, UnderlayB, TunA, overlay, "10.11.1.0/24", "10.11.2.0/24", "198.51.100.1", "198.51.100.2", workers);
        try
        {
            B = Start("b", KeyB, KeyA, AddressB, AddressA, UnderlayB, UnderlayA, TunB, overlay, "10.11.2.0/24", "10.11.1.0/24", "198.51.100.2", "198.51.100.1", workers);
        }
        catch
        {
            A.DisposeAsync().AsTask().GetAwaiter().GetResult();
            throw;
        }
    }

    private WireGuardNode Start(string name, WireGuardKey self, WireGuardKey peer, string address, string peerAddress,
        IpEndpoint underlay, IpEndpoint peerUnderlay, MemoryTunDevice tun, bool overlay, string pods, string peerPods,
        string tunnel, string peerTunnel, int workers)
    {
        string text = $"""
            [Interface]
            PrivateKey = {self.ToBase64()}
            ListenPort = {underlay.Port}
            Address = {address}/24

            """;
        if (overlay)
        {
            text += $"""
                [Overlay]
                NodeName = node-{name}
                TunnelAddress = {tunnel}
                PodCIDR = {pods}
                ClusterCIDR = 10.11.0.0/16
                Endpoints = endpoints.yaml
                Policy = policy.yaml
                FlowLog = off
                {(_services is null ? "" : "Services = services.yaml")}
                {(_ipsecKeys is null ? "" : "Encryption = ipsec\nIPsecKeyFile = ipsec-keys")}

                """;
        }
        text += $"""
            [Peer]
            PublicKey = {peer.DerivePublic().ToBase64()}
            AllowedIPs = {peerAddress}/32
            Endpoint = {peerUnderlay}

            """;
        if (overlay)
        {
            text += $"TunnelAddress = {peerTunnel}\nPodCIDRs = {peerPods}\n";
        }
        bool ipsec = _ipsecKeys is not null;
        if (ipsec)
        {
            text += $"IPsecBootId = {(name == "a" ? BootIdB : BootIdA)}\n";
        }
        string path = Path.Combine(_dir, $"{name}.conf");
        File.WriteAllText(path, text);
        var config = WgQuickConfig.Parse(text, path);
        _configs.Add(config);
        return WireGuardNode.Start(new WireGuardNodeOptions
        {
            InterfaceName = tun.Name,
            Config = config,
            Log = new NodeLog(name == "a" ? _logA : TextWriter.Null),
            Tun = tun,
            Bind = Network.Bind(ipsec ? new IpEndpoint(underlay.Address, 0) : underlay),
            IpsecNodeAddress = ipsec ? underlay.Address : null,
            IpsecBootId = ipsec ? (name == "a" ? BootIdA : BootIdB) : null,
            Clock = Clock,
            TimerThread = false,
            CryptoWorkers = workers,
            BatchSize = 64,
            HostInjector = _injector,
        });
    }

    /// <summary>Completes the handshake with one node packet from A to B (packets sent before it
    /// are staged by the engine and leave outside the batches), and forgets the frame.</summary>
    public void Handshake()
    {
        TunA.InjectPacket(Udp4(AddressA, AddressB, 9, 9, 8));
        Take(TunB);
    }

    /// <summary>Underlay datagrams of one WireGuard message type seen so far.</summary>
    public int Count(MessageType type)
    {
        lock (_tapLock)
        {
            return Underlay.Count(d => d.Type == (byte)type);
        }
    }

    /// <summary>Waits (for the node's threads, not for protocol time) until <paramref name="tun"/> has a frame.</summary>
    public static byte[] Take(MemoryTunDevice tun, int timeoutMs = 5000)
    {
        Assert.True(tun.TryTake(out var frame, TimeSpan.FromMilliseconds(timeoutMs)), $"nothing reached {tun.Name}");
        return frame;
    }

    /// <summary>An IPv4 UDP packet with a correct checksum.</summary>
    public static byte[] Udp4(string source, string destination, ushort sourcePort, ushort destinationPort, int payload, byte fill = 0x5a)
    {
        var packet = new byte[28 + payload];
        packet[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), (ushort)packet.Length);
        packet[6] = 0x40; // DF
        packet[8] = 64;
        packet[9] = 17;
        IpAddress.Parse(source).WriteBytes(packet.AsSpan(12));
        IpAddress.Parse(destination).WriteBytes(packet.AsSpan(16));
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(10), InternetChecksum.Compute(packet.AsSpan(0, 20)));
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(20), sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(22), destinationPort);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(24), (ushort)(8 + payload));
        packet.AsSpan(28).Fill(fill);
        Assert.True(TransportChecksum.TryFill(packet));
        return packet;
    }

    /// <summary>An IPv4 TCP segment (ACK, or SYN) with a correct checksum.</summary>
    public static byte[] Tcp4(string source, string destination, ushort sourcePort, ushort destinationPort, uint sequence, int payload, byte flags = 0x10)
    {
        var packet = new byte[40 + payload];
        packet[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), (ushort)packet.Length);
        packet[6] = 0x40;
        packet[8] = 64;
        packet[9] = 6;
        IpAddress.Parse(source).WriteBytes(packet.AsSpan(12));
        IpAddress.Parse(destination).WriteBytes(packet.AsSpan(16));
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(10), InternetChecksum.Compute(packet.AsSpan(0, 20)));
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(20), sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(22), destinationPort);
        BinaryPrimitives.WriteUInt32BigEndian(packet.AsSpan(24), sequence);
        BinaryPrimitives.WriteUInt32BigEndian(packet.AsSpan(28), 1);
        packet[32] = 0x50;
        packet[33] = flags;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(34), 65535);
        for (int i = 0; i < payload; i++)
        {
            packet[40 + i] = (byte)(sequence + i);
        }
        Assert.True(TransportChecksum.TryFill(packet));
        return packet;
    }

    public async ValueTask DisposeAsync()
    {
        await A.DisposeAsync();
        await B.DisposeAsync();
        foreach (var config in _configs)
        {
            config.Dispose();
        }
        Directory.Delete(_dir, recursive: true);
    }
}
