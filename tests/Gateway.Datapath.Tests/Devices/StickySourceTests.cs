using System.Net;
using System.Net.Sockets;
using Gateway.Datapath.Devices;

namespace Gateway.Datapath.Tests.Devices;

/// <summary>
/// Source address stickiness of <see cref="UdpBatchSocket"/> over loopback (no root needed): the
/// whole of 127.0.0.0/8 is local, so a peer at 127.0.0.1 that writes to 127.0.0.2 must hear back
/// from 127.0.0.2 on every send path (GSO batch, plain batch, TrySend), while the kernel's own
/// choice for 127.0.0.1 is 127.0.0.1. A source that is not (or no longer) local is dropped and the
/// datagram still goes. The memory bind behaves the same way.
/// </summary>
public sealed class StickySourceTests
{
    private static readonly IpAddress Peer = IpAddress.Parse("127.0.0.1");
    private static readonly IpAddress Second = IpAddress.Parse("127.0.0.2");

    private static PacketBuffer[] Rent(PacketBufferPool pool, int count)
    {
        var buffers = new PacketBuffer[count];
        for (int i = 0; i < count; i++)
        {
            Assert.True(pool.TryRent(out buffers[i]));
        }
        return buffers;
    }

    /// <summary>The source address of each datagram the peer socket receives, until <paramref name="count"/>.</summary>
    private static List<IPAddress> Sources(Socket peer, int count)
    {
        var got = new List<IPAddress>();
        var buffer = new byte[65536];
        peer.ReceiveTimeout = 10_000;
        while (got.Count < count)
        {
            EndPoint from = new IPEndPoint(IPAddress.Any, 0);
            peer.ReceiveFrom(buffer, ref from);
            got.Add(((IPEndPoint)from).Address);
        }
        return got;
    }

    /// <summary>The peer writes to 127.0.0.2 and the bind reports where it arrived.</summary>
    private static IpEndpoint Hello(UdpBatchSocket bind, Socket peer, PacketBufferPool pool)
    {
        peer.SendTo(new byte[] { 1, 2, 3 }, new IPEndPoint(Second.ToIPAddress(), bind.LocalPort));
        var buffers = Rent(pool, 4);
        var sources = new IpEndpoint[4];
        Assert.Equal(1, bind.Receive(buffers, sources));
        foreach (var b in buffers)
        {
            pool.Return(b);
        }
        return sources[0];
    }

    [Theory]
    [InlineData(true, true)]    // dual-stack wildcard socket, offloads on
    [InlineData(true, false)]   // dual-stack wildcard socket, plain recvmmsg/sendmmsg
    [InlineData(false, true)]   // IPv4 wildcard socket
    public void Replies_leave_from_the_address_the_peer_wrote_to(bool dualStack, bool offloads)
    {
        using var bind = new UdpBatchSocket(0, dualStack ? null : IpAddress.Parse("0.0.0.0"), offloads: offloads);
        Assert.True(bind.StickySources);
        using var peer = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        peer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var pool = new PacketBufferPool(128, 2048);

        var source = Hello(bind, peer, pool);
        Assert.Equal(new IpEndpoint(Peer, (ushort)((IPEndPoint)peer.LocalEndPoint!).Port), source);
        Assert.True(source.HasLocal);
        Assert.Equal(Second, source.LocalAddress);
        Assert.True(source.LocalInterface > 0);

        // A batch of equal datagrams (one GSO message with offloads), then the single-datagram paths.
        var outgoing = Rent(pool, 8);
        var destinations = new IpEndpoint[8];
        for (int i = 0; i < 8; i++)
        {
            Assert.True(outgoing[i].TrySet(new byte[600]));
            destinations[i] = source;
        }
        Assert.Equal(8, bind.Send(outgoing, destinations));
        Assert.Equal(SendAttempt.Sent, bind.TrySend(new byte[40], source));
        Assert.True(bind.Send(new byte[40], source));
        Assert.All(Sources(peer, 10), a => Assert.Equal(IPAddress.Parse("127.0.0.2"), a));

        // Without a local side the kernel picks the source by route: 127.0.0.1 towards 127.0.0.1.
        Assert.True(bind.Send(new byte[40], source.WithoutLocal()));
        Assert.Equal(IPAddress.Loopback, Sources(peer, 1)[0]);
        Assert.Equal(0, bind.SourcesCleared);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_source_that_is_not_local_is_cleared_and_the_datagram_still_goes(bool offloads)
    {
        using var bind = new UdpBatchSocket(0, offloads: offloads);
        using var peer = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        peer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var pool = new PacketBufferPool(128, 2048);
        var stale = new IpEndpoint(Peer, (ushort)((IPEndPoint)peer.LocalEndPoint!).Port)
            .WithLocal(IpAddress.Parse("192.0.2.77"), 1); // an address this host does not have (any more)

        var outgoing = Rent(pool, 4);
        var destinations = new IpEndpoint[4];
        for (int i = 0; i < 4; i++)
        {
            Assert.True(outgoing[i].TrySet(new byte[300]));
            destinations[i] = stale;
        }
        Assert.Equal(4, bind.Send(outgoing, destinations));
        Assert.Equal(1, bind.SourcesCleared);
        // Once gone, the address is not tried again: no further refusal.
        Assert.Equal(SendAttempt.Sent, bind.TrySend(new byte[40], stale));
        Assert.True(bind.Send(new byte[40], stale));
        Assert.All(Sources(peer, 6), a => Assert.Equal(IPAddress.Loopback, a));
        Assert.Equal(1, bind.SourcesCleared);
        if (offloads)
        {
            Assert.True(bind.GsoEnabled, "clearing the source must not turn GSO off");
        }
    }

    [Fact]
    public void Sticky_sends_and_receives_allocate_nothing()
    {
        using var bind = new UdpBatchSocket(0);
        using var peer = new UdpBatchSocket(0, Peer);
        var pool = new PacketBufferPool(256, 2048);
        var outgoing = Rent(pool, 16);
        var incoming = Rent(pool, 64);
        var toBind = new IpEndpoint[16];
        var back = new IpEndpoint[16];
        var from = new IpEndpoint[64];
        Array.Fill(toBind, new IpEndpoint(Second, bind.LocalPort));

        void Round()
        {
            foreach (var b in outgoing)
            {
                b.TrySet(new ReadOnlySpan<byte>(s_payload));
            }
            peer.Send(outgoing, toBind);
            int got = 0;
            while (got < 16)
            {
                foreach (var b in incoming)
                {
                    b.Reset(PacketBufferPool.DefaultHeadroom);
                }
                int n = bind.Receive(incoming, from);
                for (int i = 0; i < n && got < 16; i++)
                {
                    back[got++] = from[i];
                }
            }
            bind.Send(outgoing, back);
            got = 0;
            while (got < 16)
            {
                foreach (var b in incoming)
                {
                    b.Reset(PacketBufferPool.DefaultHeadroom);
                }
                got += peer.Receive(incoming, from);
            }
        }

        for (int i = 0; i < 200; i++)
        {
            Round();
        }
        Assert.True(back[0].HasLocal);
        Assert.Equal(Second, from[0].Address); // the reply came from the address written to
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 50; i++)
        {
            Round();
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
    }

    private static readonly byte[] s_payload = new byte[512];

    [Fact]
    public void Memory_binds_report_the_address_written_to_and_reply_from_it()
    {
        var network = new MemoryNetwork();
        var a = IpAddress.Parse("10.9.0.1");
        var b = IpAddress.Parse("10.9.0.2");
        var b2 = IpAddress.Parse("10.9.0.20");
        using var peer = network.Bind(new IpEndpoint(a, 1000));
        using var host = network.Bind(new IpEndpoint(b, 2000));
        network.AddAddress(host, b2);

        Assert.True(peer.Send(new byte[] { 1 }, new IpEndpoint(b2, 2000)));
        Assert.True(host.TryReceive(out _, out var source, TimeSpan.FromSeconds(5)));
        Assert.Equal(new IpEndpoint(a, 1000), source);
        Assert.Equal(b2, source.LocalAddress);
        Assert.Equal(MemoryNetwork.InterfaceIndex, source.LocalInterface);

        Assert.True(host.Send(new byte[] { 2 }, source));
        Assert.True(peer.TryReceive(out _, out var reply, TimeSpan.FromSeconds(5)));
        Assert.Equal(new IpEndpoint(b2, 2000), reply);
        Assert.True(host.Send(new byte[] { 3 }, source.WithoutLocal()));
        Assert.True(peer.TryReceive(out _, out reply, TimeSpan.FromSeconds(5)));
        Assert.Equal(new IpEndpoint(b, 2000), reply);

        // The address vanishes: the send goes from the primary and is counted.
        network.RemoveAddress(host, b2);
        Assert.Equal(SendAttempt.Sent, host.TrySend(new byte[] { 4 }, source));
        Assert.True(peer.TryReceive(out _, out reply, TimeSpan.FromSeconds(5)));
        Assert.Equal(new IpEndpoint(b, 2000), reply);
        Assert.Equal(1, host.SourcesCleared);
    }

    [Fact]
    public void The_local_side_is_a_hint_not_part_of_the_identity()
    {
        var remote = new IpEndpoint(IpAddress.Parse("192.0.2.1"), 51820);
        var sticky = remote.WithLocal(IpAddress.Parse("198.51.100.7"), 3);
        Assert.Equal(remote, sticky);
        Assert.Equal(remote.GetHashCode(), sticky.GetHashCode());
        Assert.False(remote.SameLocal(sticky));
        Assert.Equal("192.0.2.1:51820", sticky.ToString());
        Assert.Equal(IpAddress.Parse("198.51.100.7"), sticky.LocalAddress);
        Assert.Equal(3, sticky.LocalInterface);
        Assert.False(sticky.WithoutLocal().HasLocal);
        // A local address of the other family cannot be a source for this peer.
        Assert.False(remote.WithLocal(IpAddress.Parse("2001:db8::1"), 3).HasLocal);
        var v6 = new IpEndpoint(IpAddress.Parse("2001:db8::2"), 1).WithLocal(IpAddress.Parse("fe80::1"), 7);
        Assert.Equal(IpAddress.Parse("fe80::1"), v6.LocalAddress);
        Assert.Equal(48, System.Runtime.CompilerServices.Unsafe.SizeOf<IpEndpoint>());
    }
}
