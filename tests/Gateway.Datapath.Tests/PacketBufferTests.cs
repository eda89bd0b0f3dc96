using Gateway.Datapath.Devices;

namespace Gateway.Datapath.Tests;

public class PacketBufferTests
{
    [Fact]
    public void RentedBufferHasHeadroomAndTailroomAndIsEmpty()
    {
        var pool = new PacketBufferPool(4, 2048);
        Assert.True(pool.TryRent(out var b));
        Assert.True(b.Headroom >= 128);
        Assert.Equal(0, b.Length);
        Assert.Equal(pool.BufferSize - b.Headroom, b.Tailroom);
        Assert.Equal(3, pool.Available);
    }

    [Fact]
    public void HeadroomBelow128IsRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new PacketBufferPool(1, 2048, headroom: 64));
    }

    [Fact]
    public void PrependAppendAndTrimMoveTheDataWindowWithoutCopying()
    {
        var pool = new PacketBufferPool(1, 512);
        Assert.True(pool.TryRent(out var b));
        Assert.True(b.TrySet([1, 2, 3, 4]));
        int head = b.Headroom;
        Assert.True(b.TryPrepend(8, out var header));
        header.Fill(0xAA);
        Assert.Equal(head - 8, b.Headroom);
        Assert.True(b.TryAppend(16, out var tag));
        tag.Fill(0xBB);
        Assert.Equal(4 + 8 + 16, b.Length);
        Assert.Equal(new byte[] { 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 1, 2, 3, 4 }, b.Data[..12].ToArray());
        Assert.True(b.TryTrimFront(8));
        Assert.True(b.TryTrimEnd(16));
        Assert.Equal(new byte[] { 1, 2, 3, 4 }, b.Data.ToArray());
        Assert.False(b.TryPrepend(b.Headroom + 1, out _));
        Assert.False(b.TryAppend(b.Tailroom + 1, out _));
        Assert.False(b.TryTrimFront(5));
        Assert.False(b.TryTrimEnd(5));
        Assert.Equal(new byte[] { 1, 2, 3, 4 }, b.Data.ToArray());
    }

    [Fact]
    public void DeviceStyleReceiveIntoWritableTail()
    {
        var pool = new PacketBufferPool(1, 512);
        Assert.True(pool.TryRent(out var b));
        b.WritableTail[..3].Fill(9);
        b.SetLength(3);
        Assert.Equal(new byte[] { 9, 9, 9 }, b.Data.ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => b.SetLength(b.WritableTail.Length + 1));
    }

    [Fact]
    public void ExhaustedPoolSaysNoAndReturnedBuffersComeBack()
    {
        var pool = new PacketBufferPool(2, 256);
        Assert.True(pool.TryRent(out var a));
        Assert.True(pool.TryRent(out var b));
        Assert.False(pool.TryRent(out _));
        a.Return();
        Assert.True(pool.TryRent(out var c));
        Assert.Same(a, c);
        Assert.Throws<InvalidOperationException>(() => { b.Return(); b.Return(); });
        var other = new PacketBufferPool(1, 256);
        Assert.Throws<ArgumentException>(() => other.Return(c));
    }

    [Fact]
    public void BuffersDoNotOverlapInTheSlab()
    {
        var pool = new PacketBufferPool(8, 256);
        var rented = new List<PacketBuffer>();
        while (pool.TryRent(out var b))
        {
            rented.Add(b);
            b.WritableTail.Fill((byte)rented.Count);
        }
        for (int i = 0; i < rented.Count; i++)
        {
            rented[i].SetLength(rented[i].WritableTail.Length);
            Assert.All(rented[i].Data.ToArray(), x => Assert.Equal((byte)(i + 1), x));
        }
    }

    [Fact]
    public void SetDataNamesAnyWindowOfTheRegionAndRefusesOneOutsideIt()
    {
        var pool = new PacketBufferPool(1, 512);
        Assert.True(pool.TryRent(out var b));
        Assert.Equal(b.Capacity, b.Region.Length);
        b.Region[200] = 0x42;
        b.SetData(200, 10);
        Assert.Equal(200, b.Headroom);
        Assert.Equal(0x42, b.Data[0]);
        Assert.Equal(b.Capacity - 210, b.Tailroom);
        Assert.Throws<ArgumentOutOfRangeException>(() => b.SetData(b.Capacity - 5, 6));
        Assert.Throws<ArgumentOutOfRangeException>(() => b.SetData(-1, 1));
    }

    [Fact]
    public void RentPrependAppendReturnAllocateNothingAfterWarmUp()
    {
        var pool = new PacketBufferPool(64, 2048);
        var batch = new PacketBuffer[32];
        Cycle();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            Cycle();
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);

        void Cycle()
        {
            for (int i = 0; i < batch.Length; i++)
            {
                Assert.True(pool.TryRent(out batch[i]));
                batch[i].SetLength(100);
                batch[i].TryPrepend(50, out _);
                batch[i].TryAppend(16, out _);
                batch[i].SetData(10, 200);
            }
            foreach (var b in batch)
            {
                b.Return();
            }
        }
    }
}

public class PacketBufferAlignmentTests
{
    [Fact]
    public unsafe void EveryBufferRegionStartsOnACacheLine()
    {
        var pool = new PacketBufferPool(5, 300);
        while (pool.TryRent(out var b))
        {
            b.Reset(0);
            fixed (byte* p = b.WritableTail)
            {
                Assert.Equal(0u, (nuint)p % 64);
            }
        }
    }
}

public class FlowKeyTests
{
    [Fact]
    public void ReversedSwapsAddressesAndPortsAndEqualityIgnoresFlagsAndFragment()
    {
        var k = new FlowKey
        {
            Source = IpAddress.Parse("10.0.0.1"), Destination = IpAddress.Parse("10.0.0.2"), Protocol = IpProtocol.Tcp,
            SourcePort = 1000, DestinationPort = 80, TcpFlags = TcpFlags.Syn, Fragment = FragmentState.First,
        };
        FlowKey r = k.Reversed();
        Assert.Equal((k.Destination, k.Source, (ushort)80, (ushort)1000), (r.Source, r.Destination, r.SourcePort, r.DestinationPort));
        Assert.Equal(k, r.Reversed());
        var other = k;
        other.TcpFlags = TcpFlags.Ack;
        other.Fragment = FragmentState.None;
        Assert.Equal(k, other);
        Assert.Equal(k.GetHashCode(), other.GetHashCode());
        other.DestinationPort = 81;
        Assert.NotEqual(k, other);
        Assert.Equal(4, k.IpVersion);
        Assert.Equal("10.0.0.1:1000 -> 10.0.0.2:80 TCP", k.ToString());

        var icmp = new FlowKey { Source = IpAddress.Parse("fd00::1"), Destination = IpAddress.Parse("fd00::2"), Protocol = IpProtocol.Icmpv6, IcmpType = 128, IcmpId = 7 };
        Assert.Equal(7, icmp.Reversed().IcmpId);
        Assert.Equal(6, icmp.IpVersion);
        var differentId = icmp;
        differentId.IcmpId = 8;
        Assert.NotEqual(icmp, differentId);
    }
}
