using System.Runtime.InteropServices;
using Gateway.Datapath.Devices;

namespace Gateway.Datapath.Tests.Devices;

public sealed class UdpBatchSocketTests : IDisposable
{
    private const int Slots = 32;
    private const int Capacity = 2048;
    private readonly nint _memory;

    public unsafe UdpBatchSocketTests() => _memory = (nint)NativeMemory.AlignedAlloc(Slots * Capacity, 64);

    public unsafe void Dispose() => NativeMemory.AlignedFree((void*)_memory);

    private nint[] Buffers()
    {
        var buffers = new nint[Slots];
        for (int i = 0; i < Slots; i++)
        {
            buffers[i] = _memory + i * Capacity;
        }
        return buffers;
    }

    [Theory]
    [InlineData("127.0.0.1", null)]
    [InlineData("::1", null)]
    [InlineData("127.0.0.1", "dual")]
    public unsafe void BatchesRoundTripOverLoopback(string loopback, string? dual)
    {
        var address = IpAddress.Parse(loopback);
        using var receiver = new UdpBatchSocket(0, dual is null ? address : null, batchSize: Slots);
        using var sender = new UdpBatchSocket(0, dual is null ? address : null, batchSize: Slots);
        var destination = new IpEndpoint(address, receiver.LocalPort);

        var payloads = new byte[Slots][];
        var sendBuffers = new nint[Slots];
        var lengths = new int[Slots];
        var destinations = new IpEndpoint[Slots];
        var handles = new GCHandle[Slots];
        try
        {
            for (int i = 0; i < Slots; i++)
            {
                payloads[i] = new byte[100 + i * 37];
                Random.Shared.NextBytes(payloads[i]);
                handles[i] = GCHandle.Alloc(payloads[i], GCHandleType.Pinned);
                sendBuffers[i] = handles[i].AddrOfPinnedObject();
                lengths[i] = payloads[i].Length;
                destinations[i] = destination;
            }
            Assert.Equal(Slots, sender.SendBatch(sendBuffers, lengths, destinations));

            var buffers = Buffers();
            var gotLengths = new int[Slots];
            var sources = new IpEndpoint[Slots];
            int received = 0;
            while (received < Slots)
            {
                int n = receiver.ReceiveBatch(buffers.AsSpan(received), Capacity, gotLengths.AsSpan(received), sources.AsSpan(received));
                Assert.True(n > 0);
                received += n;
            }
            for (int i = 0; i < Slots; i++)
            {
                Assert.Equal(payloads[i], new ReadOnlySpan<byte>((void*)buffers[i], gotLengths[i]).ToArray());
                Assert.Equal(new IpEndpoint(address, sender.LocalPort), sources[i]);
            }
        }
        finally
        {
            foreach (var h in handles)
            {
                if (h.IsAllocated)
                {
                    h.Free();
                }
            }
        }
    }

    [Fact]
    public void SteadyStateBatchesAllocateNothing()
    {
        var loopback = IpAddress.Parse("127.0.0.1");
        using var receiver = new UdpBatchSocket(0, loopback, batchSize: Slots);
        using var sender = new UdpBatchSocket(0, loopback, batchSize: Slots);
        var buffers = Buffers();
        var lengths = new int[Slots];
        var destinations = new IpEndpoint[Slots];
        Array.Fill(lengths, 512);
        Array.Fill(destinations, new IpEndpoint(loopback, receiver.LocalPort));
        var gotLengths = new int[Slots];
        var sources = new IpEndpoint[Slots];

        int shortSends = 0;
        void Round()
        {
            // No Assert inside the measured loop: xunit's Assert.Equal allocates a comparer.
            shortSends += Slots - sender.SendBatch(buffers, lengths, destinations);
            int received = 0;
            while (received < Slots)
            {
                received += receiver.ReceiveBatch(buffers.AsSpan(received), Capacity, gotLengths.AsSpan(received), sources.AsSpan(received));
            }
        }

        for (int i = 0; i < 200; i++)
        {
            Round(); // warm up past tiered compilation
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 50; i++)
        {
            Round();
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
        Assert.Equal(0, shortSends);
    }

    [Fact]
    public async Task DisposeWakesABlockedReceiver()
    {
        var socket = new UdpBatchSocket(0, IpAddress.Parse("127.0.0.1"));
        var buffers = Buffers();
        var receive = Task.Run(() => socket.ReceiveBatch(buffers, Capacity, new int[Slots], new IpEndpoint[Slots]));
        // Whether the receiver is already blocked or not yet started, it must return -1.
        socket.Dispose();
        Assert.Equal(-1, await receive.WaitAsync(TimeSpan.FromSeconds(5)));
    }

    [Fact]
    public unsafe void TrySendSendsAtOnceOrSaysWhyNot()
    {
        using var receiver = new UdpBatchSocket(0, IpAddress.Parse("127.0.0.1"));
        var sender = new UdpBatchSocket(0, IpAddress.Parse("127.0.0.1"));
        var payload = new byte[148];
        Random.Shared.NextBytes(payload);
        Assert.Equal(SendAttempt.Sent, sender.TrySend(payload, new IpEndpoint(IpAddress.Parse("127.0.0.1"), receiver.LocalPort)));
        var buffers = Buffers();
        var lengths = new int[Slots];
        var sources = new IpEndpoint[Slots];
        Assert.Equal(1, receiver.ReceiveBatch(buffers, Capacity, lengths, sources));
        Assert.Equal(payload, new ReadOnlySpan<byte>((void*)buffers[0], lengths[0]).ToArray());

        // An IPv6 destination on an IPv4 socket, and a closed socket: refused, never thrown.
        Assert.Equal(SendAttempt.Refused, sender.TrySend(payload, new IpEndpoint(IpAddress.Parse("::1"), receiver.LocalPort)));
        sender.Dispose();
        Assert.Equal(SendAttempt.Refused, sender.TrySend(payload, new IpEndpoint(IpAddress.Parse("127.0.0.1"), receiver.LocalPort)));
    }

    [Fact]
    public void BindingATakenPortIsAClearError()
    {
        using var first = new UdpBatchSocket(0, IpAddress.Parse("127.0.0.1"));
        var e = Assert.Throws<DeviceException>(() => new UdpBatchSocket(first.LocalPort, IpAddress.Parse("127.0.0.1")));
        Assert.Contains($"cannot bind UDP port {first.LocalPort}", e.Message);
    }
}
