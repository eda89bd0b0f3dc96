using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Gateway.Datapath;
using Gateway.Datapath.Devices;
using Gateway.Datapath.Offload;
using Gateway.Tunnel;

namespace Gateway.Node.Daemon;

/// <summary>
/// The receive path, network to TUN, in three steps: the reader thread takes a batch of
/// datagrams with one recvmmsg; any crypto worker authenticates and decrypts it (the ingress
/// stage's first half); the batches then go through the stage's in-order half (replay window,
/// timers, source and policy checks) and to TUN in arrival order, runs of one TCP flow's
/// segments merged into super-packets when the device has offloads.
/// </summary>
internal sealed class ReceivePath
{
    /// <summary>Any datagram a peer may send.</summary>
    public const int SlotSize = 65536;

    /// <summary>A batch of datagrams from one recvmmsg: opened in place, then handled in order.</summary>
    internal sealed unsafe class InboundBatch
    {
        public readonly byte[] Slab;   // pinned; SlotSize per datagram, touched only as far as used
        public readonly nint[] Pointers;
        public int Count;
        public readonly int[] Lengths;
        public readonly IpEndpoint[] Sources;
        public readonly OpenTicket[] Tickets;
        public readonly StageResult[] Results; // final results of the first half (not pending)

        public InboundBatch(int capacity)
        {
            Slab = GC.AllocateUninitializedArray<byte>(SlotSize * capacity, pinned: true);
            byte* basePointer = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(Slab));
            Pointers = new nint[capacity];
            for (int i = 0; i < capacity; i++)
            {
                Pointers[i] = (nint)(basePointer + i * SlotSize);
            }
            Lengths = new int[capacity];
            Sources = new IpEndpoint[capacity];
            Tickets = new OpenTicket[capacity];
            Results = new StageResult[capacity];
        }

        public Span<byte> Slot(int i) => Slab.AsSpan(i * SlotSize, SlotSize);
    }

    private readonly TunDevice _tun;
    private readonly UdpBatchSocket _socket;
    private readonly IIngressStage _ingress;
    private readonly NodeMetrics _metrics;
    private readonly int _batchSize;
    private readonly TcpCoalescer? _coalescer; // only the in-order step uses it, one batch at a time
    private OrderedStage<InboundBatch>? _stage;
    private InboundBatch? _overflow;

    public ReceivePath(TunDevice tun, UdpBatchSocket socket, IIngressStage ingress, NodeMetrics metrics, int batchSize)
    {
        _tun = tun;
        _socket = socket;
        _ingress = ingress;
        _metrics = metrics;
        _batchSize = batchSize;
        _coalescer = tun.OffloadsEnabled ? new TcpCoalescer() : null;
    }

    /// <summary>Creates the ring of <paramref name="ring"/> batches on the crypto pool.</summary>
    public void Attach(CryptoPool pool, int ring)
    {
        var batches = new InboundBatch[ring];
        for (int i = 0; i < ring; i++)
        {
            batches[i] = new InboundBatch(_batchSize);
        }
        _overflow = new InboundBatch(_batchSize);
        _stage = pool.AddStage(batches, OpenBatch, DeliverBatch);
    }

    // Step 1 (reader thread): one recvmmsg. When every batch is still in flight the workers are
    // behind: the datagrams are read anyway (so the socket keeps draining) and dropped, counted
    // as ReceiveQueueFull.
    public void Run(CancellationToken stop)
    {
        var socket = _socket;
        var stage = _stage!;
        var overflow = _overflow!;
        while (!stop.IsCancellationRequested)
        {
            var batch = stage.TryAcquire(wait: false);
            var target = batch ?? overflow;
            int n = socket.ReceiveBatch(target.Pointers, SlotSize, target.Lengths, target.Sources);
            if (n < 0)
            {
                return;
            }
            if (batch is null)
            {
                Interlocked.Add(ref _metrics.ReceiveQueueFull, n);
                continue;
            }
            batch.Count = n;
            stage.Publish(batch);
        }
    }

    // Step 2 (any worker): authenticate and decrypt; handshake messages are handled entirely here.
    private void OpenBatch(InboundBatch batch)
    {
        var ingress = _ingress;
        for (int i = 0; i < batch.Count; i++)
        {
            int length = batch.Lengths[i];
            if (length < 0)
            {
                continue;
            }
            batch.Results[i] = ingress.Begin(batch.Sources[i], batch.Slot(i), length, out batch.Tickets[i]);
        }
    }

    // Step 3 (in order): replay window, timers, source checks, policy, then TUN.
    private void DeliverBatch(InboundBatch batch)
    {
        var ingress = _ingress;
        var gro = _coalescer;
        for (int i = 0; i < batch.Count; i++)
        {
            int length = batch.Lengths[i];
            if (length < 0)
            {
                Interlocked.Increment(ref _metrics.OversizedDatagrams);
                continue;
            }
            var slot = batch.Slot(i);
            ref var ticket = ref batch.Tickets[i];
            var result = ticket.IsPending ? ingress.Complete(ticket, batch.Sources[i], slot, length) : batch.Results[i];
            ticket = default;
            batch.Results[i] = default;
            if (result.Action == StageAction.Deliver)
            {
                Deliver(slot, result.Offset, result.Length, gro);
            }
            else if (result.Action == StageAction.Send)
            {
                _socket.Send(slot.Slice(result.Offset, result.Length), result.Endpoint);
            }
        }
        if (gro is not null)
        {
            WriteCoalesced(gro.Flush());
        }
        ingress.EndBatch();
    }

    private void Deliver(Span<byte> slot, int offset, int length, TcpCoalescer? gro)
    {
        if (gro is not null)
        {
            // Runs of one TCP flow's segments go to TUN as one super-packet (GRO).
            var packet = slot.Slice(offset, length);
            if (gro.TryAppend(packet))
            {
                return;
            }
            WriteCoalesced(gro.Flush());
            if (gro.TryStart(packet))
            {
                return;
            }
        }
        if (_tun.HasVnetHeader)
        {
            // A zero virtio_net_hdr (a plain, complete packet) in front, over bytes of the
            // WireGuard header that are no longer needed (the packet is at least 16 in).
            offset -= VirtioNetHeader.Size;
            length += VirtioNetHeader.Size;
            slot.Slice(offset, VirtioNetHeader.Size).Clear();
        }
        if (!_tun.Write(slot.Slice(offset, length)))
        {
            Interlocked.Increment(ref _metrics.TunWriteFailures);
        }
    }

    private void WriteCoalesced(ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty)
        {
            return;
        }
        if (bytes[1] != (byte)GsoType.None)
        {
            _metrics.SuperPacketsWritten++;
        }
        if (!_tun.Write(bytes))
        {
            Interlocked.Increment(ref _metrics.TunWriteFailures);
        }
    }
}
