using Gateway.Datapath;
using Gateway.LoadBalancer;
using Gateway.Policy;
using Gateway.Tunnel;

namespace Gateway.Node.Overlay;

/// <summary>
/// Traffic between two workloads of this node (docs/services.md, "Backends on the client's own
/// node"). The node routes pod-to-pod traffic inside itself through the tunnel device while it has
/// services (<c>LocalPodRules</c>), so that a backend chosen on the client's own node is reached, and
/// its replies are reverse-translated, here, as a remote one's are on the other side of the overlay.
/// </summary>
public sealed partial class OverlayPipeline
{
    /// <summary>
    /// The IPv4 service loopback address (Cilium's <c>--ipv4-service-loopback-address</c> default):
    /// the source a pod sees when it reaches itself through its own service. A packet from an
    /// address to the same address would be dropped by the pod's kernel as a martian.
    /// </summary>
    internal static readonly IpAddress ServiceLoopbackV4 = IpAddress.FromV4(0xA9FE2A01); // 169.254.42.1

    /// <summary>The IPv6 service loopback address (Gateway's choice; unique local, never on the wire).</summary>
    internal static readonly IpAddress ServiceLoopbackV6 = IpAddress.FromV6(0xfd00_a9fe_2a01_0000UL, 1); // fd00:a9fe:2a01::1

    internal static bool IsServiceLoopback(IpAddress address) => address == ServiceLoopbackV4 || address == ServiceLoopbackV6;

    /// <summary>A destination this node delivers itself: one of its workloads, or the service loopback (hairpin replies).</summary>
    private bool IsLocalTarget(IpAddress destination) => _local.TryLookup(destination, out _) || IsServiceLoopback(destination);

    /// <summary>
    /// A workload's packet (already DNAT'd when it went to a VIP) for a workload of this node: both
    /// ends are local, so the source's egress and the destination's ingress policy both apply, with
    /// the real client's identity (conntrack first). A new translated flow gets its reverse NAT on
    /// the flow entry; a backend's reply to a translated flow leaves from the VIP:port. A pod that
    /// reaches itself through its service (hairpin) is SNAT'd to the service loopback address and,
    /// as in Cilium (cilium/cilium#15709), skips policy; the reply to the loopback address goes back
    /// to the pod from the VIP. The result is a <see cref="OverlayAction.Deliver"/>: the caller hands
    /// the packet to the node's kernel (not TUN: the kernel would see it arrive on the tunnel device
    /// from a local pod's address), which routes it to the pod. Allocation-free.
    /// </summary>
    private OverlayResult DeliverLocal(Span<byte> packet, int packetOffset, ref FlowKey key, in PacketLayout layout, IpAddress vip, ushort vipPort,
        string? serviceName, long now)
    {
        var ct = _policy.Conntrack;
        if (IsServiceLoopback(key.Destination))
        {
            // Only the reply of a hairpin flow goes to the loopback address; anything else would
            // come straight back to the tunnel device.
            if (key.Protocol is not (IpProtocol.Tcp or IpProtocol.Udp) || ct.Lookup(key, now, out var loopNat) != CtResult.Reply || !loopNat.IsTranslated ||
                !ServiceNat.RewriteSource(packet, in layout, loopNat.ServiceAddress, loopNat.ServicePort) ||
                !ServiceNat.RewriteDestination(packet, in layout, loopNat.BackendAddress, key.DestinationPort))
            {
                return Reject(key, Direction.Egress, OverlayDrop.UnknownL3TargetAddress);
            }
            return Local(packetOffset, in layout);
        }
        if (vipPort != 0 && key.Source == key.Destination)
        {
            // Hairpin: the client is its own backend.
            var loopback = key.Source.IsV6 ? ServiceLoopbackV6 : ServiceLoopbackV4;
            if (!ServiceNat.RewriteSource(packet, in layout, loopback, key.SourcePort))
            {
                return Reject(key, Direction.Egress, OverlayDrop.InvalidPacket);
            }
            key.Source = loopback;
            if (ct.Lookup(key, now) == CtResult.New)
            {
                ct.Create(key, now, vip, vipPort);
            }
            return Local(packetOffset, in layout);
        }
        var decision = Decide(key, packet, layout, PolicyChecks.Both, now, destinationService: serviceName);
        CountVerdict(Direction.Egress, decision);
        if (!decision.Allowed)
        {
            // Counted on the side that refused it, as the flow event says.
            var side = decision.Egress.IsAllowed ? Direction.Ingress : Direction.Egress;
            return Count(side, OverlayResult.Dropped(decision.DropReason == DropReason.PolicyDeny ? OverlayDrop.PolicyDeny : OverlayDrop.PolicyDenied));
        }
        if (vipPort != 0)
        {
            if (decision.Conntrack == CtResult.New)
            {
                ct.Create(key, now, vip, vipPort);
            }
        }
        else if (decision.Conntrack == CtResult.Reply && key.Protocol is IpProtocol.Tcp or IpProtocol.Udp &&
                 ct.Lookup(key, now, out var nat) == CtResult.Reply && nat.IsTranslated)
        {
            // A local backend's reply to a local client: the client only ever sees the VIP.
            ServiceNat.RewriteSource(packet, in layout, nat.ServiceAddress, nat.ServicePort);
        }
        return Local(packetOffset, in layout);
    }

    private OverlayResult Local(int packetOffset, in PacketLayout layout)
    {
        Interlocked.Increment(ref _forwards[(int)Direction.Egress * CounterStride]);
        Interlocked.Increment(ref _localDeliveries);
        return new OverlayResult(OverlayAction.Deliver, packetOffset, layout.NetworkEnd, default, OverlayDrop.None, TunnelEvent.None);
    }

    private long _localDeliveries;

    /// <summary>Packets between two workloads of this node delivered back to the node's kernel.</summary>
    internal long LocalDeliveries => Interlocked.Read(ref _localDeliveries);
}
