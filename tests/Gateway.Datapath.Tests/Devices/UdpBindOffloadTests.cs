using Gateway.Datapath.Devices;

namespace Gateway.Datapath.Tests.Devices;

/// <summary>
/// <see cref="UdpBatchSocket"/> as an <see cref="IUdpBind"/> over loopback (no root needed): runs
/// of equal-size datagrams to one destination leave as UDP GSO messages, the receiver's UDP GRO
/// hands them over coalesced, and what the caller gets is still every datagram, whole and in order.
/// </summary>
public sealed class UdpBindOffloadTests
{
    private static PacketBuffer[] Rent(PacketBufferPool pool, int count)
    {
        var buffers = new PacketBuffer[count];
        for (int i = 0; i < count; i++)
        {
            Assert.True(pool.TryRent(out buffers[i]));
        }
        return buffers;
    }

    private static List<byte[]> ReceiveAll(UdpBatchSocket receiver, int expected, PacketBuffer[] buffers, List<IpEndpoint> sources)
    {
        var got = new List<byte[]>();
        var from = new IpEndpoint[buffers.Length];
        while (got.Count < expected)
        {
            foreach (var b in buffers)
            {
                b.Reset(PacketBufferPool.DefaultHeadroom);
            }
            int n = receiver.Receive(buffers, from);
            Assert.True(n > 0);
            for (int i = 0; i < n; i++)
            {
                got.Add(buffers[i].Data.ToArray());
                sources.Add(from[i]);
            }
        }
        return got;
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Equal_size_runs_go_out_segmented_and_come_back_whole_and_in_order(bool offloads)
    {
        var loopback = IpAddress.Parse("127.0.0.1");
        using var receiver = new UdpBatchSocket(0, loopback, batchSize: 64, offloads: offloads);
        using var sender = new UdpBatchSocket(0, loopback, batchSize: 64, offloads: offloads);
        var pool = new PacketBufferPool(256, 2048);
        var outgoing = Rent(pool, 64);
        var destinations = new IpEndpoint[64];
        var sent = new List<byte[]>();
        for (int i = 0; i < 64; i++)
        {
            // 40 datagrams of 1200 bytes, a shorter one that ends that run, then a run of 300s.
            int length = i < 40 ? 1200 : i == 40 ? 700 : 300;
            var data = new byte[length];
            new Random(i).NextBytes(data);
            data[0] = (byte)i;
            Assert.True(outgoing[i].TrySet(data));
            destinations[i] = new IpEndpoint(loopback, receiver.LocalPort);
            sent.Add(data);
        }
        Assert.Equal(64, sender.Send(outgoing, destinations));
        if (offloads)
        {
            Assert.True(sender.GsoEnabled, "the kernel refused UDP GSO on loopback");
            Assert.Equal(2, sender.GsoSends); // 41 datagrams, then 23
        }
        var sources = new List<IpEndpoint>();
        var got = ReceiveAll(receiver, 64, Rent(pool, 16), sources);
        Assert.Equal(64, got.Count);
        for (int i = 0; i < 64; i++)
        {
            Assert.Equal(sent[i], got[i]);
            Assert.Equal(sender.LocalPort, sources[i].Port);
        }
        if (offloads && receiver.GroEnabled)
        {
            Assert.True(receiver.GroReceives > 0, "the receiver saw no coalesced datagrams");
        }
    }

    [Fact]
    public void Runs_break_at_a_new_destination_and_the_buffer_level_receive_drops_nothing()
    {
        var loopback = IpAddress.Parse("127.0.0.1");
        using var first = new UdpBatchSocket(0, loopback);
        using var second = new UdpBatchSocket(0, loopback);
        using var sender = new UdpBatchSocket(0, loopback);
        var pool = new PacketBufferPool(128, 2048);
        var outgoing = Rent(pool, 30);
        var destinations = new IpEndpoint[30];
        for (int i = 0; i < 30; i++)
        {
            Assert.True(outgoing[i].TrySet(new byte[] { (byte)i, 1, 2, 3, 4, 5, 6, 7 }));
            destinations[i] = new IpEndpoint(loopback, (i / 5) % 2 == 0 ? first.LocalPort : second.LocalPort);
        }
        Assert.Equal(30, sender.Send(outgoing, destinations));
        var a = ReceiveAll(first, 15, Rent(pool, 32), []);
        var b = ReceiveAll(second, 15, Rent(pool, 32), []);
        Assert.Equal(Enumerable.Range(0, 30).Where(i => (i / 5) % 2 == 0).Select(i => (byte)i), a.Select(d => d[0]));
        Assert.Equal(Enumerable.Range(0, 30).Where(i => (i / 5) % 2 == 1).Select(i => (byte)i), b.Select(d => d[0]));
    }
}
