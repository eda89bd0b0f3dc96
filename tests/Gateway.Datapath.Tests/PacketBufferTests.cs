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
    public void BatchFillFilterAndDrain()
    {
        var pool = new PacketBufferPool(16, 256);
        var batch = new PacketBatch(8);
        Assert.Equal(8, pool.RentInto(batch, 100));
        Assert.True(batch.IsFull);
        Assert.False(pool.TryRent(out var extra) && batch.TryAdd(extra));
        for (int i = 0; i < batch.Count; i++)
        {
            batch[i].TrySet([(byte)i]);
        }
        int dropped = batch.Filter(0, (_, b) => b.Data[0] % 2 == 0);
        Assert.Equal(4, dropped);
        Assert.Equal(new byte[] { 0, 2, 4, 6 }, batch.AsSpan().ToArray().Select(b => b.Data[0]).ToArray());
        PacketBuffer removed = batch.RemoveAtSwap(0);
        Assert.Equal(0, removed.Data[0]);
        removed.Return();
        batch.ReturnAll();
        Assert.Equal(0, batch.Count);
        Assert.Equal(16 - 1, pool.Available);   // `extra` is still rented
    }

    [Fact]
    public void RentPrependAppendReturnAllocateNothingAfterWarmUp()
    {
        var pool = new PacketBufferPool(64, 2048);
        var batch = new PacketBatch(32);
        Cycle();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            Cycle();
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);

        void Cycle()
        {
            pool.RentInto(batch, 32);
            foreach (PacketBuffer b in batch)
            {
                b.SetLength(100);
                b.TryPrepend(50, out _);
                b.TryAppend(16, out _);
            }
            batch.ReturnAll();
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

public class PacketBatchDeviceTests
{
    [Fact]
    public void UdpBatchSocketFillsAndDrainsABatchOverLoopbackWithoutCopies()
    {
        var pool = new PacketBufferPool(32, 2048);
        using var receiver = new UdpBatchSocket(0, IpAddress.Parse("127.0.0.1"));
        using var sender = new UdpBatchSocket(0, IpAddress.Parse("127.0.0.1"));
        var destination = new IpEndpoint(IpAddress.Parse("127.0.0.1"), receiver.LocalPort);

        // Drain: three packets built in pool buffers go out in one SendBatch.
        var outgoing = new PacketBatch(8);
        Assert.Equal(3, pool.RentInto(outgoing, 3));
        for (int i = 0; i < 3; i++)
        {
            outgoing[i].TrySet(new byte[] { (byte)i, 0xAB, (byte)(10 + i) }.AsSpan(0, 1 + i));
        }
        Span<nint> addresses = stackalloc nint[8];
        Span<int> lengths = stackalloc int[8];
        Span<IpEndpoint> endpoints = new IpEndpoint[8];
        int toSend = outgoing.GetSendSegments(addresses, lengths);
        endpoints[..toSend].Fill(destination);
        Assert.Equal(3, sender.SendBatch(addresses[..toSend], lengths[..toSend], endpoints[..toSend]));
        outgoing.ReturnAll();

        // Fill: the receiver lands them straight in pool buffers of one batch.
        var incoming = new PacketBatch(8);
        pool.RentInto(incoming, 8);
        int got = 0;
        var received = new List<byte[]>();
        while (got < 3)
        {
            int n = incoming.GetReceiveAddresses(addresses, out int capacity);
            Assert.Equal(2048 - PacketBufferPool.DefaultHeadroom, capacity);
            int count = receiver.ReceiveBatch(addresses[..n], capacity, lengths, endpoints);
            Assert.True(count > 0);
            Assert.Equal(count, incoming.CommitReceived(lengths, count));
            foreach (PacketBuffer b in incoming)
            {
                received.Add(b.Data.ToArray());
            }
            got += count;
            incoming.ReturnAll();
            pool.RentInto(incoming, 8);
        }
        incoming.ReturnAll();
        Assert.Equal(new[] { new byte[] { 0 }, new byte[] { 1, 0xAB }, new byte[] { 2, 0xAB, 12 } }, received.OrderBy(r => r.Length));
        Assert.Equal(32, pool.Available);
    }

    [Fact]
    public void CommitReceivedDropsNegativeLengthsAndUnusedBuffers()
    {
        var pool = new PacketBufferPool(8, 256);
        var batch = new PacketBatch(8);
        pool.RentInto(batch, 5);
        int kept = batch.CommitReceived([10, -1, 20], 3);
        Assert.Equal(2, kept);
        Assert.Equal(new[] { 10, 20 }, batch.AsSpan().ToArray().Select(b => b.Length));
        Assert.Equal(6, pool.Available);
        Assert.Throws<ArgumentOutOfRangeException>(() => batch.CommitReceived([1, 2, 3], 3));
    }
}
