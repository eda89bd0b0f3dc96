using System.Buffers.Binary;
using Gateway.Datapath;

namespace Gateway.Tunnel.Tests;

/// <summary>
/// netns.sh's routing loop: a peer's endpoint inside its own allowed IPs makes the kernel route
/// the engine's own datagrams back into the tunnel. The engine recognises them (UDP from its
/// listen port to that endpoint) and drops them instead of sealing them again.
/// </summary>
public class RoutingLoopTests
{
    private static byte[] Udp4(IpAddress source, ushort sourcePort, IpAddress destination, ushort destinationPort, int payload, ushort fragment = 0)
    {
        var p = new byte[28 + payload];
        p[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(2), (ushort)p.Length);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(6), fragment);
        p[8] = 64;
        p[9] = 17;
        source.WriteBytes(p.AsSpan(12));
        destination.WriteBytes(p.AsSpan(16));
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(20), sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(22), destinationPort);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(24), (ushort)(8 + payload));
        return p;
    }

    [Fact]
    public void Our_own_datagram_routed_back_into_the_tunnel_is_dropped_not_sealed_again()
    {
        using var p = new EnginePair();
        p.Handshake();
        var inside = IpAddress.Parse("10.0.0.2"); // B's allowed IP on A
        var self = IpAddress.Parse("10.0.0.1");
        p.A.Engine.ListenPort = 51820;
        p.A.Engine.SetEndpoint(p.PeerBOnA, new IpEndpoint(inside, 7));

        var buffer = new byte[2048];
        // What the kernel hands back: A's own datagram to the endpoint, through A's tunnel.
        var looped = Udp4(self, 51820, inside, 7, 100);
        Assert.Equal(TunnelEvent.RoutingLoop, p.A.Engine.Encapsulate(looped, buffer).Reason);
        Assert.Equal(1, p.A.Engine.GetCount(TunnelEvent.RoutingLoop));

        // Anything else to that address still goes: another source port, another destination
        // port, a later fragment (it carries no ports), ICMP.
        Assert.Equal(TunnelAction.SendToNetwork, p.A.Engine.Encapsulate(Udp4(self, 40000, inside, 7, 100), buffer).Action);
        Assert.Equal(TunnelAction.SendToNetwork, p.A.Engine.Encapsulate(Udp4(self, 51820, inside, 8, 100), buffer).Action);
        Assert.Equal(TunnelAction.SendToNetwork, p.A.Engine.Encapsulate(Udp4(self, 51820, inside, 7, 100, fragment: 185), buffer).Action);
        Assert.Equal(TunnelAction.SendToNetwork, p.A.Engine.Encapsulate(Packets.Icmp4(self, inside, 1), buffer).Action);
        Assert.Equal(1, p.A.Engine.GetCount(TunnelEvent.RoutingLoop));
    }

    [Fact]
    public void Truncated_or_foreign_packets_never_match()
    {
        var endpoint = new IpEndpoint(IpAddress.Parse("10.0.0.2"), 7);
        var packet = Udp4(IpAddress.Parse("10.0.0.1"), 51820, endpoint.Address, 7, 0);
        Assert.True(InnerPacket.IsDatagramFromPortTo(packet, 51820, endpoint));
        for (int length = 0; length < packet.Length; length++)
        {
            Assert.False(InnerPacket.IsDatagramFromPortTo(packet.AsSpan(0, length), 51820, endpoint));
        }
        Assert.False(InnerPacket.IsDatagramFromPortTo(packet, 0, endpoint));
        var v6 = Packets.Ip6(IpAddress.Parse("fd00::1"), IpAddress.Parse("fd00::2"), 8);
        v6[6] = 17;
        BinaryPrimitives.WriteUInt16BigEndian(v6.AsSpan(40), 51820);
        BinaryPrimitives.WriteUInt16BigEndian(v6.AsSpan(42), 7);
        Assert.True(InnerPacket.IsDatagramFromPortTo(v6, 51820, new IpEndpoint(IpAddress.Parse("fd00::2"), 7)));
        Assert.False(InnerPacket.IsDatagramFromPortTo(v6, 51820, endpoint));
    }
}
