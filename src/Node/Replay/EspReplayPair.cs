using System.Buffers.Binary;
using System.Security.Cryptography;
using Gateway.Datapath;
using Gateway.Node.Overlay;
using Gateway.Policy;
using Gateway.Tunnel.Esp;

namespace Gateway.Node.Replay;

/// <summary>The overlay encryption a replay measures.</summary>
public enum ReplayEncryption : byte
{
    WireGuard,
    /// <summary>IPsec ESP tunnel mode (rfc4106(gcm(aes)), ESN, Cilium-style per node-pair keys).</summary>
    Ipsec,
}

/// <summary>Receives the ESP packets an IPsec replay pair exchanges (the payload of IP protocol 50
/// between the underlay addresses).</summary>
public interface IEspUnderlaySink
{
    void EspPacket(bool fromA, ReadOnlySpan<byte> espPacket);
}

/// <summary>The outcome of one ESP replay step: sent/delivered at [Offset, +Length), or dropped.</summary>
internal readonly record struct EspStep(bool Ok, int Offset, int Length, OverlayDrop Drop, EspStatus Esp)
{
    public static EspStep Dropped(OverlayDrop drop) => new(false, 0, 0, drop, EspStatus.Ok);
    public static EspStep Failed(EspStatus esp) => new(false, 0, 0, OverlayDrop.Tunnel, esp);
}

/// <summary>
/// Two nodes back to back in memory with IPsec instead of WireGuard: one <see cref="EspTunnel"/>
/// per node between the underlay addresses (tunnel mode, SPI 3, ICV 128, ESN on), keyed from a
/// random global key through Cilium's per node-pair derivation with a random boot id per node.
/// In overlay mode each side runs the same steps as the daemon's <see cref="OverlayPipeline"/>
/// (parse, egress policy, VXLAN with the identity as VNI, seal; open, VXLAN sender and VNI
/// checks, ingress policy), with ESP where the pipeline has WireGuard: the daemon's pipeline is
/// written against the WireGuard engine and cannot take ESP yet (docs/ipsec.md).
/// </summary>
internal sealed class EspReplayPair : IDisposable
{
    public const byte KeyId = 3;
    /// <summary>The overlay's VXLAN port (the daemon's default, as the WireGuard replay uses).</summary>
    private const ushort VxlanPort = 8472;
    private readonly TimeProvider _clock;
    private static readonly IpAddress NodeA = ReplayPair.UnderlayA.Address, NodeB = ReplayPair.UnderlayB.Address;

    private readonly Side _a, _b;
    private readonly byte[] _globalKey = new byte[20];

    private sealed class Side(EspTunnel tunnel, IpAddress node, IpAddress peerNode)
    {
        public readonly EspTunnel Tunnel = tunnel;
        public readonly IpAddress Node = node, PeerNode = peerNode;
        public PolicyEngine? Policy;
        public IpAddress TunnelAddress, PeerTunnelAddress;
        public readonly LpmTable<bool> Local = new(), PeerPods = new(), Cluster = new();
        public readonly byte[] Mac = new byte[6], PeerMac = new byte[6];
    }

    public EspReplayPair(ReplayMode mode, ReplayCapture capture, ReplayPolicy? policy, TimeProvider clock)
    {
        Mode = mode;
        _clock = clock;
        RandomNumberGenerator.Fill(_globalKey);
        string keys = $"{KeyId}+ rfc4106(gcm(aes)) {Convert.ToHexStringLower(_globalKey)} 128\n";
        string bootA = Guid.NewGuid().ToString(), bootB = Guid.NewGuid().ToString();
        var keysA = new IpsecKeyManager(clock, IpsecKeyManager.DefaultRotationDuration);
        var keysB = new IpsecKeyManager(clock, IpsecKeyManager.DefaultRotationDuration);
        keysA.Load(keys);
        keysB.Load(keys);
        _a = new Side(new EspTunnel(keysA, NodeA, bootA), NodeA, NodeB);
        _b = new Side(new EspTunnel(keysB, NodeB, bootB), NodeB, NodeA);
        _a.Tunnel.SetPeer(NodeB, bootB);
        _b.Tunnel.SetPeer(NodeA, bootA);
        if (mode == ReplayMode.Overlay)
        {
            ArgumentNullException.ThrowIfNull(policy);
            var podsA = ReplayCapture.HostPrefixes(capture.SideA);
            var podsB = ReplayCapture.HostPrefixes(capture.SideB);
            Configure(_a, policy.CreateEngine(clock), ReplayPair.TunnelA, ReplayPair.TunnelB, podsA, podsB);
            Configure(_b, policy.CreateEngine(clock), ReplayPair.TunnelB, ReplayPair.TunnelA, podsB, podsA);
        }
    }

    private static void Configure(Side side, PolicyEngine policy, IpAddress tunnel, IpAddress peerTunnel, IpPrefix[] local, IpPrefix[] peer)
    {
        side.Policy = policy;
        side.TunnelAddress = tunnel;
        side.PeerTunnelAddress = peerTunnel;
        foreach (var p in local)
        {
            side.Local.Set(p, true);
            side.Cluster.Set(p, true);
        }
        foreach (var p in peer)
        {
            side.PeerPods.Set(p, true);
            side.Cluster.Set(p, true);
        }
        VxlanFrame.NodeMac(tunnel, side.Mac);
        VxlanFrame.NodeMac(peerTunnel, side.PeerMac);
    }

    public ReplayMode Mode { get; }

    /// <summary>Both directions' SA keys, for the Wireshark esp_sa file (secrets; replay only).</summary>
    public IReadOnlyList<EspSaKeys> ExportKeys() => [.. _a.Tunnel.ExportOutboundKeys(), .. _b.Tunnel.ExportOutboundKeys()];

    public EspTunnel TunnelA => _a.Tunnel;
    public EspTunnel TunnelB => _b.Tunnel;

    /// <summary>Seals the packet at buffer[at, +length) from one node; the ESP packet is the result.</summary>
    public EspStep Outbound(bool fromA, Span<byte> buffer, int at, int length)
    {
        Side side = fromA ? _a : _b;
        if (Mode == ReplayMode.Plain) return Seal(side, buffer, at, length);
        if (FlowParser.ParseIp(buffer.Slice(at, length), out var key) != ParseStatus.Ok)
            return EspStep.Dropped(OverlayDrop.InvalidPacket);
        if (!side.Local.TryLookup(key.Source, out _))
            return Seal(side, buffer, at, length); // node traffic: the IP packet itself in ESP
        if (key.Protocol == IpProtocol.Udp && key.DestinationPort == VxlanPort)
            return EspStep.Dropped(OverlayDrop.EncapsulationProhibited);
        if (!side.PeerPods.TryLookup(key.Destination, out _))
            return EspStep.Dropped(side.Cluster.TryLookup(key.Destination, out _) ? OverlayDrop.NoTunnelEndpoint : OverlayDrop.UnknownL3TargetAddress);
        var decision = side.Policy!.Process(key, NowNs(), PolicyChecks.Egress);
        if (!decision.Allowed)
            return EspStep.Dropped(decision.DropReason == DropReason.PolicyDeny ? OverlayDrop.PolicyDeny : OverlayDrop.PolicyDenied);
        if (decision.SourceIdentity is 0 or > ReservedIdentity.MaxAllocated)
            return EspStep.Dropped(OverlayDrop.InvalidSourceIp);
        ushort etherType = key.IpVersion == 4 ? (ushort)0x0800 : (ushort)0x86DD;
        VxlanFrame.Write(buffer.Slice(at - VxlanFrame.Overhead, VxlanFrame.Overhead), length, side.TunnelAddress, side.PeerTunnelAddress,
            VxlanPort, decision.SourceIdentity, VxlanFrame.SourcePort(key), side.PeerMac, side.Mac, etherType);
        return Seal(side, buffer, at - VxlanFrame.Overhead, VxlanFrame.Overhead + length);
    }

    private static EspStep Seal(Side side, Span<byte> buffer, int at, int length)
    {
        EspResult r = side.Tunnel.Encapsulate(side.PeerNode, buffer, at, length);
        return r.IsOk ? new EspStep(true, r.Offset, r.Length, OverlayDrop.None, EspStatus.Ok) : EspStep.Failed(r.Status);
    }

    /// <summary>Opens an ESP packet on the node it was sent to; the delivered packet is the result
    /// (its offset relative to <paramref name="esp"/>).</summary>
    public EspStep Inbound(bool fromA, Span<byte> esp)
    {
        Side side = fromA ? _b : _a;
        EspResult opened = side.Tunnel.Decapsulate(side.PeerNode, esp);
        if (!opened.IsOk) return EspStep.Failed(opened.Status);
        if (Mode == ReplayMode.Plain) return new EspStep(true, opened.Offset, opened.Length, OverlayDrop.None, EspStatus.Ok);
        var packet = esp.Slice(opened.Offset, opened.Length);
        if (!VxlanFrame.TryRead(packet, side.TunnelAddress, VxlanPort, out var outerSource, out uint vni,
                out int frameOffset, out int frameLength, out bool malformed))
        {
            return new EspStep(true, opened.Offset, opened.Length, OverlayDrop.None, EspStatus.Ok); // node traffic
        }
        if (malformed) return EspStep.Dropped(OverlayDrop.InvalidPacket);
        // The VXLAN datagram must come from the tunnel address of the node whose SA opened it.
        if (outerSource != side.PeerTunnelAddress) return EspStep.Dropped(OverlayDrop.UnknownSender);
        var frame = packet.Slice(frameOffset, frameLength);
        ushort etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[12..]);
        if (etherType is not (0x0800 or 0x86DD)) return EspStep.Dropped(OverlayDrop.UnsupportedL3Protocol);
        var inner = frame[VxlanFrame.EthernetLength..];
        if (FlowParser.ParseIp(inner, out var key, out var layout) != ParseStatus.Ok) return EspStep.Dropped(OverlayDrop.InvalidPacket);
        if (vni is 0 or > ReservedIdentity.MaxAllocated) return EspStep.Dropped(OverlayDrop.InvalidIdentity);
        if (!side.Local.TryLookup(key.Destination, out _)) return EspStep.Dropped(OverlayDrop.UnknownL3TargetAddress);
        var decision = side.Policy!.Process(key, NowNs(), PolicyChecks.Ingress, sourceIdentity: vni);
        if (!decision.Allowed)
            return EspStep.Dropped(decision.DropReason == DropReason.PolicyDeny ? OverlayDrop.PolicyDeny : OverlayDrop.PolicyDenied);
        return new EspStep(true, opened.Offset + frameOffset + VxlanFrame.EthernetLength, layout.NetworkEnd, OverlayDrop.None, EspStatus.Ok);
    }

    private long NowNs() => (long)(_clock.GetTimestamp() * (1_000_000_000.0 / _clock.TimestampFrequency));

    public void Dispose()
    {
        _a.Tunnel.Dispose();
        _b.Tunnel.Dispose();
        CryptographicOperations.ZeroMemory(_globalKey);
    }
}
