using System.Buffers.Binary;
using Gateway.Datapath;
using Gateway.Node.Overlay;

namespace Gateway.Node.Tests.Overlay;

/// <summary>
/// The VXLAN framing's per-packet fast paths against the slow, obvious forms: the header written
/// with word stores and a checksum summed from field values must be the header a byte-by-byte
/// writer and <see cref="InternetChecksum"/> give; the receive side's read of an opened packet
/// must agree with the full read; the source port must be a stable flow hash in Linux's range.
/// </summary>
public sealed class VxlanFrameTests
{
    private static readonly byte[] MacA = [0x02, 0x47, 0x57, 0x00, 0x00, 0x01];
    private static readonly byte[] MacB = [0x02, 0x47, 0x57, 0x00, 0x00, 0x02];

    [Theory]
    [InlineData("198.51.100.1", "198.51.100.2", 1400, 256u, (ushort)33000, (ushort)0x0800)]
    [InlineData("10.0.0.1", "10.255.255.254", 0, 0xFFFFFFu, (ushort)60999, (ushort)0x86DD)]
    [InlineData("255.255.255.255", "255.255.255.255", 65535 - 50, 1u, (ushort)32768, (ushort)0x0806)]
    [InlineData("0.0.0.0", "0.0.0.1", 1, 16777214u, (ushort)45000, (ushort)0x0800)]
    public void HeaderIsWhatAByteByByteWriterProduces(string source, string destination, int innerLength, uint vni, ushort sourcePort, ushort etherType)
    {
        var src = IpAddress.Parse(source);
        var dst = IpAddress.Parse(destination);
        var header = new byte[VxlanFrame.Overhead];
        Array.Fill(header, (byte)0xEE); // nothing may be left over from a previous packet
        VxlanFrame.Write(header, innerLength, src, dst, 8472, vni, sourcePort, MacB, MacA, etherType);

        var expected = new byte[VxlanFrame.Overhead];
        expected[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(expected.AsSpan(2), (ushort)(VxlanFrame.Overhead + innerLength));
        BinaryPrimitives.WriteUInt16BigEndian(expected.AsSpan(6), 0x4000);
        expected[8] = 64;
        expected[9] = 17;
        src.WriteBytes(expected.AsSpan(12));
        dst.WriteBytes(expected.AsSpan(16));
        BinaryPrimitives.WriteUInt16BigEndian(expected.AsSpan(10), InternetChecksum.Compute(expected.AsSpan(0, 20)));
        BinaryPrimitives.WriteUInt16BigEndian(expected.AsSpan(20), sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(expected.AsSpan(22), 8472);
        BinaryPrimitives.WriteUInt16BigEndian(expected.AsSpan(24), (ushort)(8 + 8 + 14 + innerLength));
        Vxlan.Write(expected.AsSpan(28), vni);
        MacB.CopyTo(expected.AsSpan(36));
        MacA.CopyTo(expected.AsSpan(42));
        BinaryPrimitives.WriteUInt16BigEndian(expected.AsSpan(48), etherType);

        Assert.Equal(expected, header);
        Assert.Equal(0, InternetChecksum.Compute(header.AsSpan(0, 20))); // a valid header sums to 0xFFFF
    }

    [Fact]
    public void BadArgumentsAreRefusedBeforeAnythingIsWritten()
    {
        var header = new byte[VxlanFrame.Overhead];
        var src = IpAddress.Parse("10.0.0.1");
        Assert.Throws<ArgumentException>(() => VxlanFrame.Write(header.AsSpan(0, 49), 1, src, src, 8472, 1, 40000, MacA, MacB, 0x0800));
        Assert.Throws<ArgumentException>(() => VxlanFrame.Write(header, 1, src, src, 8472, 1, 40000, MacA.AsSpan(0, 5), MacB, 0x0800));
        Assert.Throws<ArgumentOutOfRangeException>(() => VxlanFrame.Write(header, 1, src, src, 8472, 0x1000000, 40000, MacA, MacB, 0x0800));
        Assert.All(header, b => Assert.Equal(0, b));
    }

    [Fact]
    public void OpenedReadAgreesWithTheFullRead()
    {
        var tunnelA = IpAddress.Parse("198.51.100.1");
        var tunnelB = IpAddress.Parse("198.51.100.2");
        var rng = new Random(13);
        for (int i = 0; i < 2000; i++)
        {
            // A well-formed datagram to B, then one field or another broken at random.
            var packet = new byte[VxlanFrame.Overhead + 28];
            VxlanFrame.Write(packet, 28, tunnelA, tunnelB, 8472, (uint)rng.Next(1, 1 << 24), 40000, MacB, MacA, 0x0800);
            switch (rng.Next(8))
            {
                case 0: packet[9] = 6; break;                                  // not UDP
                case 1: packet[17] ^= 1; break;                                // another destination
                case 2: packet[6] = 0x20; break;                               // a fragment
                case 3: packet[22] = 0x12; break;                              // another port
                case 4: BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(24), 20); break; // UDP length too short
                case 5: packet[28] = 0; break;                                 // VXLAN without the I flag
                case 6: packet[0] = 0x46; break;                               // options: the IHL moves UDP
                default: break;
            }
            bool full = VxlanFrame.TryRead(packet, tunnelB, 8472, out var source, out uint vni, out int offset, out int length, out bool malformed);
            bool opened = VxlanFrame.TryReadOpened(packet, tunnelA, tunnelB, 8472, out uint vni2, out int offset2, out int length2, out bool malformed2);
            Assert.Equal(full, opened);
            if (full)
            {
                Assert.Equal(tunnelA, source);
                Assert.Equal((vni, offset, length, malformed), (vni2, offset2, length2, malformed2));
            }
        }
        // An IPv6 packet is never VXLAN to an IPv4 tunnel address.
        Assert.False(VxlanFrame.TryReadOpened(new byte[80], IpAddress.Parse("fd00::1"), tunnelB, 8472, out _, out _, out _, out _));
    }

    [Fact]
    public void SourcePortIsAStableFlowHashInLinuxRange()
    {
        var ports = new HashSet<ushort>();
        for (uint i = 0; i < 4096; i++)
        {
            var key = new FlowKey
            {
                Source = IpAddress.FromV4(0x0A000000u + i), Destination = IpAddress.FromV4(0x0A100001u),
                Protocol = IpProtocol.Tcp, SourcePort = (ushort)(10000 + i), DestinationPort = 80,
            };
            ushort port = VxlanFrame.SourcePort(key);
            Assert.InRange(port, (ushort)32768, (ushort)60999);
            Assert.Equal(port, VxlanFrame.SourcePort(key with { TcpFlags = TcpFlagsOf(i) })); // per flow, not per packet
            ports.Add(port);
        }
        // 4096 flows over 28,232 ports: a fair hash leaves few collisions (expected ~3,800 distinct).
        Assert.True(ports.Count > 3500, $"only {ports.Count} distinct source ports for 4096 flows");
    }

    private static byte TcpFlagsOf(uint i) => (byte)(i % 3 == 0 ? 0x02 : 0x10);
}
