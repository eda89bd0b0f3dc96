using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;

namespace Gateway.Datapath.Tests;

/// <summary>
/// Untrusted bytes: every reader must return a status, never throw, and depend only on the bytes
/// inside its span. The span is cut out of a larger buffer whose bytes outside it are set to two
/// different guard values; identical results prove nothing outside was read (and managed span
/// bounds checks would throw on any overrun, which the property also catches).
/// </summary>
public class ParserRobustnessTests
{
    private static readonly LinkType[] LinkTypes =
    [
        LinkType.Ethernet, LinkType.Raw, LinkType.RawDlt12, LinkType.LinuxSll, LinkType.LinuxSll2, LinkType.Null, LinkType.Loop, LinkType.Ipv6, (LinkType)999,
    ];

    private static string RunAll(ReadOnlySpan<byte> span, LinkType linkType)
    {
        var s = new System.Text.StringBuilder();
        s.Append(FlowParser.Parse(linkType, span, out FlowKey k, out PacketLayout l)).Append(k.ToString()).Append(l.GetHashCode()).Append(k.TcpFlags).Append(k.Fragment);
        s.Append(FlowParser.ParseIp(span, out k)).Append(k.GetHashCode());
        s.Append(FlowParser.ParseVxlan(linkType, span, out k, out uint vni, out FlowKey inner)).Append(k.GetHashCode()).Append(vni).Append(inner.GetHashCode());
        s.Append(FlowParser.ParseVxlanPayload(span, out vni, out inner, out l)).Append(vni).Append(inner.GetHashCode()).Append(l.GetHashCode());
        s.Append(FlowParser.ParseGenevePayload(span, out vni, out inner, out l)).Append(vni).Append(inner.GetHashCode()).Append(l.GetHashCode());
        s.Append(Ipv4Header.TryRead(span, out var h4)).Append(h4.GetHashCode()).Append(Ipv4Header.VerifyChecksum(span));
        s.Append(Ipv6Header.TryRead(span, out var h6)).Append(h6.GetHashCode());
        s.Append(Ipv6Extensions.TryWalk(span, span.IsEmpty ? (byte)0 : span[0], out var ext)).Append(ext.GetHashCode());
        s.Append(TcpHeader.TryRead(span, out var t)).Append(t.GetHashCode());
        s.Append(UdpHeader.TryRead(span, out var u)).Append(u.GetHashCode());
        s.Append(IcmpHeader.TryRead(span, false, out var i4)).Append(i4.GetHashCode());
        s.Append(IcmpHeader.TryRead(span, true, out var i6)).Append(i6.GetHashCode());
        s.Append(Vxlan.TryRead(span, out vni)).Append(vni).Append(Vxlan.IsStrict(span));
        s.Append(GeneveHeader.TryRead(span, out var g)).Append(g.GetHashCode());
        s.Append(WireGuardHeader.TryRead(span, out var w)).Append(w.GetHashCode());
        s.Append(LinkLayer.TryRead(linkType, span, out var li)).Append(li.GetHashCode());
        s.Append(TransportChecksum.Verify(span)).Append(InternetChecksum.Compute(span));
        return s.ToString();
    }

    private static void AssertSameWithDifferentGuards(byte[] data, LinkType linkType)
    {
        byte[] a = new byte[data.Length + 64];
        byte[] b = new byte[data.Length + 64];
        Array.Fill(a, (byte)0x00);
        Array.Fill(b, (byte)0xFF);
        data.CopyTo(a, 32);
        data.CopyTo(b, 32);
        string ra = RunAll(a.AsSpan(32, data.Length), linkType);
        string rb = RunAll(b.AsSpan(32, data.Length), linkType);
        Assert.Equal(ra, rb);
    }

    [Property(MaxTest = 300)]
    public void RandomBytesNeverThrowAndNeverReadOutsideTheSpan(byte[] data, byte linkTypeIndex)
    {
        AssertSameWithDifferentGuards(data, LinkTypes[linkTypeIndex % LinkTypes.Length]);
    }

    [Property(MaxTest = 300)]
    public void MutatedValidPacketsNeverThrowAndNeverReadOutsideTheSpan(int seed)
    {
        var random = new Random(seed);
        (byte[] frame, LinkType lt) = ValidFrames.Random(random);
        // Flip, overwrite length-ish bytes and cut: the interesting bugs live near real headers.
        int mutations = random.Next(1, 6);
        for (int m = 0; m < mutations; m++)
        {
            switch (random.Next(3))
            {
                case 0: frame[random.Next(frame.Length)] ^= (byte)(1 << random.Next(8)); break;
                case 1: frame[random.Next(frame.Length)] = (byte)random.Next(256); break;
                default: frame = frame[..random.Next(frame.Length + 1)]; break;
            }
            if (frame.Length == 0) break;
        }
        AssertSameWithDifferentGuards(frame, lt);
    }

    [Property(MaxTest = 150)]
    public void EveryTruncationOfAValidPacketIsRejected(int seed)
    {
        var random = new Random(seed);
        (byte[] frame, LinkType lt) = ValidFrames.Random(random);
        Assert.Equal(ParseStatus.Ok, FlowParser.Parse(lt, frame, out _, out PacketLayout layout));
        // Any cut before the end of the IP packet must fail (lengths never trusted past the span).
        for (int cut = 0; cut < layout.NetworkEnd; cut++)
        {
            Assert.NotEqual(ParseStatus.Ok, FlowParser.Parse(lt, frame.AsSpan(0, cut), out _));
        }
    }
}

/// <summary>Random well-formed frames across link types, families and transports.</summary>
internal static class ValidFrames
{
    public static (byte[] Frame, LinkType LinkType) Random(Random r)
    {
        byte[] payload = new byte[r.Next(0, 64)];
        r.NextBytes(payload);
        bool v6 = r.Next(2) == 0;
        byte proto = r.Next(4) switch { 0 => IpProtocol.Tcp, 1 => IpProtocol.Udp, 2 => v6 ? IpProtocol.Icmpv6 : IpProtocol.Icmp, _ => IpProtocol.Sctp };
        byte[] l4 = proto switch
        {
            IpProtocol.Tcp => PacketFactory.Tcp((ushort)r.Next(65536), (ushort)r.Next(65536), (byte)r.Next(256), payload),
            IpProtocol.Udp => PacketFactory.Udp((ushort)r.Next(65536), (ushort)r.Next(65536), payload),
            IpProtocol.Sctp => [.. new byte[12], .. payload],
            _ => PacketFactory.IcmpEcho(v6, (ushort)r.Next(65536), 1, payload.Length),
        };
        byte[] ip;
        if (v6)
        {
            bool ext = r.Next(2) == 0;
            byte[] body = ext ? [proto, 0, 1, 4, 0, 0, 0, 0, .. l4] : l4;
            ip = PacketFactory.Ipv6(new UInt128((ulong)r.NextInt64(), (ulong)r.NextInt64()), new UInt128((ulong)r.NextInt64(), (ulong)r.NextInt64()),
                ext ? IpProtocol.DestinationOptions : proto, body);
        }
        else
        {
            ip = PacketFactory.Ipv4((uint)r.NextInt64(0, uint.MaxValue), (uint)r.NextInt64(0, uint.MaxValue), proto, l4, (ushort)r.Next(65536));
        }
        switch (r.Next(5))
        {
            case 0: return (ip, LinkType.Raw);
            case 1: return (PacketFactory.Sll2(ip), LinkType.LinuxSll2);
            case 2: return (PacketFactory.Ethernet(ip, vlan: (ushort)r.Next(4096)), LinkType.Ethernet);
            case 3:
                byte[] inner = PacketFactory.Ethernet(ip);
                return (PacketFactory.Ethernet(PacketFactory.Ipv4(0xC0A80001, 0xC0A80002, IpProtocol.Udp,
                    PacketFactory.Udp(40000, 8472, PacketFactory.Vxlan((uint)r.Next(1 << 24), inner)))), LinkType.Ethernet);
            default: return (PacketFactory.Ethernet(ip), LinkType.Ethernet);
        }
    }
}
