using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Gateway.Datapath.Devices;

namespace Gateway.Datapath.Tests.Devices;

/// <summary>The socket's control side: SO_MARK (WireGuard's fwmark) and moving to another port
/// while a thread is blocked receiving on it (UAPI listen_port).</summary>
public sealed class UdpBatchSocketControlTests : IDisposable
{
    private const int Capacity = 2048;
    private readonly nint _memory;

    public unsafe UdpBatchSocketControlTests() => _memory = (nint)NativeMemory.AlignedAlloc(4 * Capacity, 64);

    public unsafe void Dispose() => NativeMemory.AlignedFree((void*)_memory);

    [SkippableFact]
    public void SetMark_sets_SO_MARK_and_the_mark_survives_a_rebind()
    {
        Skip.IfNot(Environment.UserName == "root", "SO_MARK needs CAP_NET_ADMIN (run as root)");
        using var socket = new UdpBatchSocket(0, IpAddress.Parse("127.0.0.1"));
        Assert.Equal(0u, socket.ReadMark());
        socket.SetMark(0x51871);
        Assert.Equal(0x51871u, socket.ReadMark());
        socket.Rebind(0);
        Assert.Equal(0x51871u, socket.ReadMark());
        socket.SetMark(0);
        Assert.Equal(0u, socket.ReadMark());
    }

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData(null)] // dual-stack, as the daemon binds it
    public void Rebind_moves_a_socket_a_thread_is_blocked_on_to_the_new_port(string? bind)
    {
        using var socket = new UdpBatchSocket(0, bind is null ? null : IpAddress.Parse(bind), batchSize: 4);
        ushort before = socket.LocalPort;
        var received = new List<(int Length, IpEndpoint From)>();
        using var ready = new ManualResetEventSlim();
        var receiver = new Thread(() =>
        {
            var buffers = new nint[] { _memory, _memory + Capacity, _memory + 2 * Capacity, _memory + 3 * Capacity };
            var lengths = new int[4];
            var sources = new IpEndpoint[4];
            ready.Set();
            int n = socket.ReceiveBatch(buffers, Capacity, lengths, sources);
            for (int i = 0; i < n; i++)
            {
                received.Add((lengths[i], sources[i]));
            }
        }) { IsBackground = true };
        receiver.Start();
        ready.Wait();
        Thread.Sleep(50); // let it block in poll on the old socket (not protocol time: a thread hand-off)

        using var probe = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        var free = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        ushort target = (ushort)((IPEndPoint)free.Client.LocalEndPoint!).Port;
        free.Dispose();
        Assert.Equal(target, socket.Rebind(target));
        Assert.Equal(target, socket.LocalPort);

        // The blocked thread now reads from the new port.
        probe.Send(new byte[77], 77, new IPEndPoint(IPAddress.Loopback, target));
        Assert.True(receiver.Join(TimeSpan.FromSeconds(10)), "the receiving thread never saw the datagram sent to the new port");
        var (length, from) = Assert.Single(received);
        Assert.Equal(77, length);
        Assert.Equal(IpAddress.Parse("127.0.0.1"), from.Address);
        // The socket keeps working after the hand-over (nothing shut the new one down).
        probe.Send(new byte[33], 33, new IPEndPoint(IPAddress.Loopback, target));
        var moreLengths = new int[1];
        var moreSources = new IpEndpoint[1];
        Assert.Equal(1, socket.ReceiveBatch([_memory], Capacity, moreLengths, moreSources));
        Assert.Equal(33, moreLengths[0]);
        // The old socket is gone once its last waiter left: its port can be bound again.
        using (var reuse = new UdpClient(new IPEndPoint(IPAddress.Loopback, before))) { }

        // And sending uses the new port as its source.
        using var sink = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        Assert.True(socket.Send(new byte[10], new IpEndpoint(IpAddress.Parse("127.0.0.1"), (ushort)((IPEndPoint)sink.Client.LocalEndPoint!).Port)));
        var remote = new IPEndPoint(IPAddress.Any, 0);
        sink.Client.ReceiveTimeout = 10_000;
        sink.Receive(ref remote);
        Assert.Equal(target, remote.Port);
    }

    [Fact]
    public void Rebind_to_a_port_in_use_fails_and_leaves_the_socket_where_it_was()
    {
        using var taken = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        ushort busy = (ushort)((IPEndPoint)taken.Client.LocalEndPoint!).Port;
        using var socket = new UdpBatchSocket(0, IpAddress.Parse("127.0.0.1"));
        ushort before = socket.LocalPort;
        var error = Assert.Throws<DeviceException>(() => socket.Rebind(busy));
        Assert.Contains($"cannot bind UDP port {busy}", error.Message);
        Assert.Equal(before, socket.LocalPort);
        taken.Send(new byte[5], 5, new IPEndPoint(IPAddress.Loopback, before));
        var lengths = new int[1];
        var sources = new IpEndpoint[1];
        Assert.Equal(1, socket.ReceiveBatch([_memory], Capacity, lengths, sources));
        Assert.Equal(5, lengths[0]);
    }
}
